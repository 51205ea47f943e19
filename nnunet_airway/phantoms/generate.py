"""Synthetic chest CT phantoms with an airway tree: one call per case, and a writer for a folder of them.

Field of view: without an explicit spacing, the spacing is derived from the shape so the grid covers
an adult chest (``ADULT_FOV_MM`` = 350 x 350 x 300 mm in x, y, z) and the trachea has its adult lumen
radius of about 8 mm whatever the shape. With an explicit spacing the field of view is shape x spacing;
when that is smaller than an adult chest on any axis, the whole chest (tree, radii and lengths included)
is scaled down uniformly to fit (``anatomy_scale`` in the sidecar); a larger field of view keeps adult
size and adds air or body around it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nnunet_airway import image_io, writing
from nnunet_airway.phantoms.anatomy import ADULT_FOV_MM, Chest, make_chest
from nnunet_airway.phantoms.case import Phantom
from nnunet_airway.phantoms.crop import CROPS, Crop, CropDoesNotFit, choose_crop, entry_point
from nnunet_airway.phantoms.preview import write_preview
from nnunet_airway.phantoms.render import Grid, Intensities, lumen_is_connected, render, wall_intensity
from nnunet_airway.phantoms.scanner import SCANNER_MODELS, clinical_intensities
from nnunet_airway.phantoms.tree import Branch, LabelRule, grow_airway_tree, mark_labelled

DEFAULT_SHAPE_ZYX: tuple[int, int, int] = (160, 192, 192)
MIN_SHAPE = 16  # voxels per axis; coarser grids cannot show the main bronchi anyway
# a crop whose tree has no candidate subtree (its label stops early), or, in a box that holds deep crops, whose
# crop misses the target below, is grown again from (seed, attempt)
CROP_TREE_ATTEMPTS = 8
# what a crop in a box of at least DEEP_CROP_BOX_MM per axis is meant to hold: a lobe's bronchi down to
# generation 6 (trachea = 0), at least 20 labelled branches (the committed 96x128x128 x 0.7 mm crops hold 21-53)
DEEP_CROP_BOX_MM = 64.0
DEEP_CROP_MIN_LABELLED = 20
DEEP_CROP_MIN_GENERATION = 6
# 2: crops, scanner models (whole-chest ideal cases unchanged from 1); 3: calibre, counts and branching angles
# brought to real trees' (docs/tree-statistics.md); version 2 is commit b97ce71
GENERATOR_VERSION = 3
LABEL_MIN_RADIUS_VOXELS = 0.6  # least labelled lumen radius, in (largest) voxel spacings
SPACING_RANGE_MM = (0.01, 100.0)  # a spacing outside this is a typo, not a CT
# peak memory of one phantom per voxel: measured 28-30 bytes (float32 work arrays, CT and label, the copies
# made for writing) on a 2-core Linux machine; the estimate keeps a margin
BYTES_PER_VOXEL = 40
DEFAULT_CROP_SPACING: tuple[float, float, float] = (0.7, 0.7, 0.7)  # mm, crops without an explicit spacing
CROP_LABEL_RULE = (
    "the root (the branch entering the box) and its descendants are the only airways drawn; the label holds "
    "those the whole-chest rule admits (lumen radius >= label_min_radius_mm, long enough for a skeleton, drawn "
    "6-connected, siblings together, parent labelled), judged on the whole-chest grid of the same spacing; "
    "every labelled one lies inside the box, the root is cut by its face"
)


def holds_deep_crops(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> bool:
    """Whether a crop box of ``shape_zyx`` voxels at ``spacing_xyz`` mm is at least DEEP_CROP_BOX_MM per axis."""
    return bool(np.all(np.asarray(shape_zyx[::-1], float) * np.asarray(spacing_xyz, float) >= DEEP_CROP_BOX_MM))


def crop_depth(branches: list[Branch], crop: Crop) -> tuple[int, int]:
    """(labelled branches, deepest labelled absolute generation) of a crop's drawn subtree."""
    labelled = [branches[i] for i in crop.subtree if branches[i].labelled]
    return len(labelled), max((b.generation for b in labelled), default=-1)


def crop_is_deep_enough(n_labelled: int, max_generation: int) -> bool:
    return n_labelled >= DEEP_CROP_MIN_LABELLED and max_generation >= DEEP_CROP_MIN_GENERATION


def case_seed(seed: int, index: int) -> int:
    """The seed of case ``index`` in a set generated with ``seed`` (independent streams per case)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _f32(value: float) -> float:
    """A float that survives the float32 of a NIfTI header unchanged."""
    return float(np.float32(value))


def derived_spacing(shape_zyx: Sequence[int]) -> tuple[float, float, float]:
    """Spacing (x, y, z) in mm that makes the grid cover an adult chest."""
    z, y, x = shape_zyx
    return (_f32(ADULT_FOV_MM[0] / x), _f32(ADULT_FOV_MM[1] / y), _f32(ADULT_FOV_MM[2] / z))


def _anatomy_scale(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> float:
    fov = np.asarray(shape_zyx[::-1], float) * np.asarray(spacing_xyz, float)
    return float(min(1.0, *(fov / np.asarray(ADULT_FOV_MM))))


def _label_min_radius(spacing_xyz: Sequence[float]) -> float:
    """Least lumen radius (mm) a labelled branch may have: 0.6 of the largest spacing (thinner lumens
    break up on the grid; each labelled branch is also checked to be drawn 6-connected)."""
    return LABEL_MIN_RADIUS_VOXELS * float(max(spacing_xyz))


def memory_estimate(shape_zyx: Sequence[int]) -> int:
    """Bytes one phantom of this shape needs at its peak (``BYTES_PER_VOXEL`` per voxel)."""
    return int(np.prod([int(n) for n in shape_zyx], dtype=np.float64) * BYTES_PER_VOXEL)


def machine_memory() -> int | None:
    """Physical memory of this machine in bytes (None when the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def grid_problem(shape_zyx: Sequence[int], spacing_xyz: Sequence[float] | None, crop: str = "chest") -> str | None:
    """Why a phantom cannot be made on this grid (a sentence saying what to change), or None."""
    if crop not in CROPS:
        return f"crop must be one of {CROPS}, got {crop!r}"
    if len(shape_zyx) != 3 or any(int(n) != n for n in shape_zyx):
        return f"shape must be three whole numbers Z Y X, got {tuple(shape_zyx)}"
    if any(n < MIN_SHAPE for n in shape_zyx):
        return f"shape {tuple(shape_zyx)} is too small: give at least {MIN_SHAPE} voxels per axis"
    if spacing_xyz is not None:
        if len(spacing_xyz) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing_xyz):
            return f"spacing must be three positive numbers X Y Z in mm, got {tuple(spacing_xyz)}"
        low, high = SPACING_RANGE_MM
        if any(not low <= s <= high for s in spacing_xyz):
            return f"spacing {tuple(spacing_xyz)} mm is not a CT's: give values between {low:g} and {high:g} mm"
    needed = memory_estimate(shape_zyx)
    available = machine_memory()
    if available is not None and needed > available:
        return (f"a phantom of shape {tuple(shape_zyx)} needs about {needed / 2**30:.1f} GiB of memory, more than "
                f"this machine's {available / 2**30:.1f} GiB; give a smaller shape")
    spacing = _spacing(shape_zyx, spacing_xyz, crop)
    if crop != "chest" and max(spacing) > 1.5:
        return f"a {crop} crop is meant for clinical spacings (0.5-1.0 mm); got {tuple(spacing)} mm"
    # the left main bronchus is the thinnest labelled branch a phantom must show (lumen >= 0.7 * 7.6 mm)
    scale = _anatomy_scale(shape_zyx, spacing) if crop == "chest" else 1.0
    thinnest = 0.7 * 7.6 * scale
    if _label_min_radius(spacing) > thinnest:
        return (
            f"the grid {tuple(shape_zyx)} with spacing {tuple(round(s, 3) for s in spacing)} mm is too coarse to "
            f"show the main bronchi in the label; give more voxels per axis (e.g. 64 96 96 or more)"
        )
    return None


def _spacing(shape_zyx: Sequence[int], spacing_xyz: Sequence[float] | None, crop: str) -> tuple:
    """The spacing (x, y, z) mm a phantom uses: the given one, else derived (whole chest) or the crop default."""
    if spacing_xyz is not None:
        return tuple(_f32(s) for s in spacing_xyz)
    return derived_spacing(shape_zyx) if crop == "chest" else DEFAULT_CROP_SPACING


def chest_grid_shape(spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """(Z, Y, X) voxels of the virtual grid that covers an adult chest at ``spacing_xyz`` (crops lie on it)."""
    return tuple(int(np.ceil(f / s)) for f, s in zip(ADULT_FOV_MM[::-1], tuple(spacing_xyz)[::-1], strict=True))


def _origin(shape_zyx: Sequence[int], spacing_xyz: Sequence[float], rng: np.random.Generator) -> tuple:
    """A scanner-like origin (mm): the field of view centred near the table axis, a table position in z."""
    extent = np.asarray(shape_zyx[::-1], float) * np.asarray(spacing_xyz, float)
    jitter = rng.uniform(-10.0, 10.0, 3) * np.array([1.0, 1.0, 0.0]) + np.array([0.0, 0.0, rng.uniform(-450, -250)])
    origin = -extent / 2.0 + np.asarray(spacing_xyz) / 2.0 + jitter
    return tuple(_f32(round(float(o) * 64.0) / 64.0) for o in origin)


def _vessels(branches: list[Branch], rng: np.random.Generator, scale: float):
    """Pulmonary arteries: a tube beside every bronchus (from the main bronchi on), about as wide as the
    bronchus, offset along the bronchus' plane normal; each starts where its parent's vessel ends."""
    starts, ends, radii = [], [], []
    end_of: dict[int, np.ndarray] = {}
    for branch in branches:
        if branch.parent is None:
            continue
        radius = branch.outer_radius * rng.uniform(0.8, 1.05)
        offset = branch.plane_normal * (branch.outer_radius + radius + rng.uniform(0.6, 1.6) * scale)
        start = end_of.get(branch.parent, branch.start + offset)
        end_of[branch.id] = branch.end + offset
        starts.append(start)
        ends.append(end_of[branch.id])
        radii.append(radius)
    return np.array(starts).reshape(-1, 3), np.array(ends).reshape(-1, 3), np.array(radii)


def _intensities(rng: np.random.Generator) -> Intensities:
    u = rng.uniform
    return Intensities(
        fat=u(-110.0, -85.0), muscle=u(35.0, 55.0), bone=u(380.0, 520.0), lung=u(-870.0, -835.0),
        lung_texture=u(15.0, 28.0), noise=u(20.0, 40.0),
    )


def _round(v, digits: int = 3):
    return [round(float(c), digits) for c in v]


def _branch_record(branch: Branch, wall_hu: float) -> dict[str, Any]:
    def opt(value):
        return None if value is None else round(float(value), 3)

    return {
        "id": branch.id, "parent": branch.parent, "generation": branch.generation,
        "start_mm": _round(branch.start), "end_mm": _round(branch.end),
        "radius_mm": round(branch.radius, 4), "length_mm": round(branch.length, 3), "labelled": branch.labelled,
        "wall_thickness_mm": round(branch.wall, 4), "wall_hu": round(wall_hu, 2), "children": list(branch.children),
        "radius_ratio": opt(branch.radius_ratio), "branch_angle_deg": opt(branch.branch_angle_deg),
        "plane_rotation_deg": opt(branch.plane_rotation_deg),
    }


def _anatomy_record(chest: Chest) -> dict[str, Any]:
    """The chest's main shapes (mm, physical coordinates), for tests and readers of the sidecar."""
    return {
        "body_centre_xy_mm": _round(chest.body_centre_xy), "body_semi_axes_mm": _round(chest.body_semi_axes),
        "fat_thickness_mm": round(chest.fat_thickness, 3),
        "lungs": [{"side": side, "centre_mm": _round(lung.centre), "semi_axes_mm": _round(lung.semi_axes)}
                  for side, lung in zip(("right", "left"), chest.lungs, strict=True)],
        "heart_centre_mm": _round(chest.heart_centre), "heart_semi_axes_mm": _round(chest.heart_semi_axes),
        "spine_centre_xy_mm": _round(chest.spine_centre_xy), "spine_radius_mm": round(chest.spine_radius, 3),
        "carina_mm": _round(chest.carina),
    }


def _crop_record(crop: Crop, branches: list[Branch], chest_shape: Sequence[int], entry: np.ndarray,
                 tree_attempt: int, deep: bool) -> dict[str, Any]:
    root = branches[crop.root]
    return {
        "kind": crop.kind, "tree_attempt": tree_attempt,
        # None: a box smaller than the target is meant for (DEEP_CROP_BOX_MM); else whether the crop met it
        "deep_target_met": crop_is_deep_enough(*crop_depth(branches, crop)) if deep else None,
        "root": crop.root, "root_generation": root.generation, "root_parent": root.parent,
        "root_radius_mm": round(root.radius, 4), "root_entry_mm": _round(entry),
        "box_low_mm": _round(crop.low_mm), "box_high_mm": _round(crop.high_mm),
        "box_offset_zyx": list(crop.offset_zyx), "chest_grid_shape_zyx": list(chest_shape),
        "generations": "absolute: trachea = 0; the root's generation is root_generation",
        "label_rule": CROP_LABEL_RULE,
    }


@dataclasses.dataclass
class GrownCase:
    """A phantom before rendering: the whole-chest tree, its crop box (None for the whole chest) and the random
    stream the rendering goes on with. ``attempt``: which tree (0: from the seed alone); ``deep``: whether the
    box is large enough for the deep-crop target."""

    rng: np.random.Generator
    chest_geometry: image_io.Geometry
    chest: Chest
    label_min_radius: float
    rule: LabelRule
    branches: list[Branch]
    vessels: Any
    hu: Intensities
    crop: Crop | None
    attempt: int
    deep: bool


def grow_case(seed: int, shape_zyx: tuple[int, ...], spacing: Sequence[float], crop: str,
              scanner: str) -> GrownCase:
    """Grow the tree of ``generate_phantom(seed, ...)`` and choose its crop, without rendering (a fraction of
    the time; the arguments already checked). A tree none of whose subtrees fits, or, in a box that holds deep
    crops (holds_deep_crops), whose crop misses the target (crop_is_deep_enough), is grown again from the
    stream (seed, attempt), up to CROP_TREE_ATTEMPTS trees; when none meets the target the deepest crop is
    taken. Raises CropDoesNotFit as choose_crop does (a small box: at once)."""
    # the tree grows on the grid of the whole chest; a crop is a box of that grid
    chest_shape = shape_zyx if crop == "chest" else chest_grid_shape(spacing)
    deep = crop != "chest" and holds_deep_crops(shape_zyx, spacing)
    best, best_depth, error = None, (-1, -1), None
    for attempt in range(CROP_TREE_ATTEMPTS):
        # attempt 0 draws from the seed alone; a later one (a tree none of whose subtrees fits, or whose crop is
        # shallower than the target) from (seed, attempt)
        rng = np.random.default_rng(int(seed) if attempt == 0 else [int(seed), attempt])
        chest_geometry = image_io.Geometry(spacing, _origin(chest_shape, spacing, rng))
        chest_grid = Grid(chest_shape, chest_geometry)
        half_voxel = np.asarray(spacing) / 2.0
        fov_low = np.asarray(chest_geometry.origin) - half_voxel
        fov_high = (np.asarray(chest_geometry.origin) + np.asarray(chest_shape[::-1]) * np.asarray(spacing)
                    - half_voxel)
        chest = make_chest(fov_low, fov_high, rng)
        label_min_radius = _label_min_radius(spacing)
        rule = LabelRule(spacing, label_min_radius)
        branches = grow_airway_tree(chest, rng, clearance=float(max(spacing)), rule=rule)
        mark_labelled(branches, rule, drawn_connected=functools.partial(lumen_is_connected, chest_grid))
        vessels = _vessels(branches, rng, chest.scale)
        hu = _intensities(rng) if scanner == "ideal" else clinical_intensities(rng)
        if crop == "chest":
            return GrownCase(rng, chest_geometry, chest, label_min_radius, rule, branches, vessels, hu, None, 0, deep)
        try:
            crop_box = choose_crop(branches, crop, shape_zyx, spacing, chest_geometry.origin, rule.min_steps)
        except CropDoesNotFit as refused:
            if not refused.label_too_shallow and not deep:  # a small box no subtree fits: say so now
                raise
            error = refused
            continue
        grown = GrownCase(rng, chest_geometry, chest, label_min_radius, rule, branches, vessels, hu, crop_box,
                          attempt, deep)
        depth = crop_depth(branches, crop_box)
        if not deep or crop_is_deep_enough(*depth):
            return grown
        if best is None or depth > best_depth:
            best, best_depth = grown, depth
    if best is not None:  # no tree reached the target: the deepest crop seen (its sidecar's deep_target_met False)
        return best
    raise CropDoesNotFit(f"{error} (tried {CROP_TREE_ATTEMPTS} trees for seed {seed})",
                         label_too_shallow=error.label_too_shallow) from None


def generate_phantom(seed: int, shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX,
                     spacing_xyz: Sequence[float] | None = None, case: str | None = None,
                     crop: str = "chest", scanner: str | None = None) -> Phantom:
    """Make one phantom, deterministically from ``seed`` (an int >= 0).

    ``shape_zyx`` in voxels; ``spacing_xyz`` in mm (None: derived so the grid covers an adult chest, or
    ``DEFAULT_CROP_SPACING`` for crops). ``crop``: "chest" (the whole chest, scaled down to fit the grid),
    "lung" or "lobe" (an adult chest, only the box around one lung's or lobe's airway subtree; see
    ``nnunet_airway.phantoms.crop``). ``scanner``: "ideal" (lumen air -1000 HU, no blur, no table) or
    "clinical" (per-case values, blur and table from ``nnunet_airway.phantoms.scanner.CLINICAL_RANGES``);
    None: "ideal" for the whole chest, "clinical" for crops. Raises ValueError when the grid cannot show the
    airways asked for.
    """
    scanner = ("ideal" if crop == "chest" else "clinical") if scanner is None else scanner
    if scanner not in SCANNER_MODELS:
        raise ValueError(f"scanner must be one of {SCANNER_MODELS}, got {scanner!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    shape_zyx = tuple(int(n) for n in shape_zyx)
    problem = grid_problem(shape_zyx, spacing_xyz, crop)
    if problem:
        raise ValueError(problem)
    spacing = _spacing(shape_zyx, spacing_xyz, crop)
    grown = grow_case(seed, shape_zyx, spacing, crop, scanner)
    (rng, chest_geometry, chest, label_min_radius, rule, branches, vessels, hu, crop_box, attempt, deep) = (
        grown.rng, grown.chest_geometry, grown.chest, grown.label_min_radius, grown.rule, grown.branches,
        grown.vessels, grown.hu, grown.crop, grown.attempt, grown.deep)
    chest_shape = shape_zyx if crop == "chest" else chest_grid_shape(spacing)
    drawn = branches
    geometry, grid = chest_geometry, Grid(chest_shape, chest_geometry)
    if crop_box is not None:
        root = branches[crop_box.root]
        entry = entry_point(root, np.asarray(crop_box.low_mm), np.asarray(crop_box.high_mm), float(max(spacing)))
        drawn = [dataclasses.replace(root, start=entry)] + [branches[i] for i in crop_box.subtree[1:]]
        origin = np.asarray(chest_geometry.origin) + np.asarray(crop_box.offset_zyx[::-1]) * np.asarray(spacing)
        geometry = image_io.Geometry(spacing, tuple(_f32(o) for o in origin))
        grid = Grid(shape_zyx, geometry)
    ct, label = render(grid, chest, drawn, vessels, hu, rng, largest_radius=branches[0].radius)

    labelled = [b for b in drawn if b.labelled]
    truth = {
        "case": case, "seed": int(seed), "generator_version": GENERATOR_VERSION,
        "shape_zyx": list(shape_zyx), "spacing_xyz": list(geometry.spacing), "origin_xyz": list(geometry.origin),
        "direction": list(geometry.direction),
        "coordinates": "physical ITK/LPS mm (x, y, z): +x patient left, +y posterior, +z superior; "
                       "point = origin + spacing * (i, j, k) for array index [k, j, i]",
        "fov_mm": _round(np.asarray(shape_zyx[::-1]) * np.asarray(spacing)), "anatomy_scale": round(chest.scale, 4),
        "crop": None if crop_box is None else _crop_record(crop_box, branches, chest_shape, drawn[0].start, attempt,
                                                                deep),
        "label_min_radius_mm": round(label_min_radius, 4), "label_min_skeleton_steps": rule.min_steps,
        "anatomy": _anatomy_record(chest),
        "branches": [_branch_record(b, wall_intensity(b.radius, branches[0].radius, hu)) for b in drawn],
        "n_branches": len(drawn), "n_labelled_branches": len(labelled),
        "max_generation": max(b.generation for b in drawn),
        "max_labelled_generation": max((b.generation for b in labelled), default=-1),
        "n_vessels": int(len(vessels[2])),
        "scanner_model": scanner,
        "intensities_hu": {k: None if v is None else round(v, 2) for k, v in vars(hu).items()},
        "label_voxels": int(label.sum()),
    }
    return Phantom(ct=ct, label=label, geometry=geometry, truth=truth)


def write_phantoms(out_dir: str | Path, n: int, seed: int = 0, shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX,
                   spacing_xyz: Sequence[float] | None = None, preview: bool = False, overwrite: bool = False,
                   case_prefix: str = "phantom", crop: str = "chest", scanner: str | None = None) -> list[str]:
    """Write ``n`` phantoms into ``out_dir`` and return their case names (``<case_prefix>_000``, ...).

    Files: ``images/<case>.nii.gz`` (CT, int16 HU), ``labels/<case>.nii.gz`` (uint8), ``truth/<case>.json``
    and with ``preview`` ``previews/<case>.png``. Case i uses the seed ``case_seed(seed, i)``. A non-empty
    ``out_dir`` is refused (DataError) unless ``overwrite``. ``crop`` and ``scanner`` as for ``generate_phantom``.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    problem = grid_problem(tuple(shape_zyx), spacing_xyz, crop)
    if problem:
        raise ValueError(problem)
    created = not Path(out_dir).exists()
    out = image_io.prepare_output_dir(out_dir, overwrite)
    try:
        return _write_cases(out, int(n), seed, shape_zyx, spacing_xyz, preview, case_prefix, crop, scanner)
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):  # a failed run leaves no empty --out
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_cases(out: Path, n: int, seed: int, shape_zyx: Sequence[int], spacing_xyz: Sequence[float] | None,
                 preview: bool, case_prefix: str, crop: str, scanner: str | None) -> list[str]:
    cases = []
    for index in tqdm(range(n), desc="phantoms", unit="case"):
        case = f"{case_prefix}_{index:03d}"
        phantom = generate_phantom(case_seed(seed, index), shape_zyx, spacing_xyz, case=case, crop=crop, scanner=scanner)
        phantom.truth["base_seed"], phantom.truth["index"] = int(seed), index
        writing.write_image(out / "images" / f"{case}.nii.gz", phantom.ct, phantom.geometry)
        writing.write_image(out / "labels" / f"{case}.nii.gz", phantom.label, phantom.geometry)
        writing.write_json(out / "truth" / f"{case}.json", phantom.truth)
        if preview:
            write_preview(out / "previews" / f"{case}.png", phantom)
        cases.append(case)
    return cases
