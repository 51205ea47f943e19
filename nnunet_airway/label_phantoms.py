"""Phantoms around real airway labels (``nnunet-airway phantoms --from-label``): read the label, parse it with the
evaluator's tree parse, render a CT around it (``nnunet_airway.phantoms.around_label``) and write the case as
``write_phantoms`` does: images/, labels/, truth/ and previews/ under one folder.

The label written is the source label voxel for voxel (on its own grid and direction), or, with ``spacing``,
the source label resampled (linear interpolation of 0/1, threshold 0.5) onto an identity-direction grid of that
spacing, which the sidecar says. The sidecar records the source (name, SHA-256), the parse (branch ids,
generations, centreline end points in the written grid's frame: origin + spacing * index, direction not
applied, as ``evaluation.phantom_truth`` reads them) and every drawn value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from nnunet_airway import image_io, writing
from nnunet_airway.dataset_conversion.volumes import image_suffix
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.binarize import airway_mask, is_binary
from nnunet_airway.evaluation.reference import parse_tree
from nnunet_airway.phantoms.around_label import (
    LABEL_RANGES,
    CanonicalAxes,
    LabelBranch,
    canonical_axes,
    canonical_geometry,
    render_around_label,
    wall_thickness_mm,
    with_children,
)
from nnunet_airway.phantoms.case import Phantom
from nnunet_airway.phantoms.crop import CROP_ROOT_GENERATION, CropDoesNotFit, choose_crop
from nnunet_airway.phantoms.generate import DEFAULT_SHAPE_ZYX, GENERATOR_VERSION, case_seed
from nnunet_airway.phantoms.preview import write_preview
from nnunet_airway.phantoms.render import wall_intensity
from nnunet_airway.phantoms.scanner import clinical_intensities
from nnunet_airway.phantoms.tree import Branch

PARSE_CONNECTIVITY = 26
# a label resampled to a spacing at least twice its own is drawn on a grid up to this many times finer per axis, but
# not finer than DRAW_SPACING_MM, and averaged into the written voxels (partial volume of a coarse scan)
MAX_AVERAGE_FACTOR = 4
DRAW_SPACING_MM = 1.0
CROP_MIN_STEPS = 8.0  # the label rule's skeleton steps (phantoms.tree.LabelRule), for the root's stub in a crop


def case_name(path: Path) -> str:
    """The case name of a label file: its name without the image suffix."""
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def label_sources(inputs: Sequence[str | Path]) -> dict[str, Path]:
    """case -> label file of the given files and folders (every image file in a folder); DataError for a missing
    path, a folder without images, a file of another format or one case name twice."""
    found: dict[str, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.is_file() and image_suffix(p))
            if not files:
                raise DataError(f"{item}: no image files (.nii.gz, .nii, .nrrd, .mha, ...) in this folder; "
                                f"give the folder of airway labels")
        elif item.is_file():
            if not image_suffix(item):
                raise DataError(f"{item}: not an image file (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd); give an "
                                f"airway label in one of those formats")
            files = [item]
        else:
            raise DataError(f"{item}: no such file or folder; check the path")
        for path in files:
            case = case_name(path)
            if case in found and found[case].resolve() != path.resolve():
                raise DataError(f"{path}: case {case} is also {found[case]}; give each case once")
            found[case] = path
    return found


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _ordered_points(points: np.ndarray, toward_start: np.ndarray) -> np.ndarray:
    """Centreline points (K, 3) ordered along their principal axis, starting at the end nearer ``toward_start``
    ((M, 3) points of the branch's parent, or of its children for the trachea with ``reverse``)."""
    if len(points) < 2:
        return points
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    order = np.argsort(centred @ axis, kind="stable")
    ordered = points[order]
    d_first = np.min(np.linalg.norm(toward_start - ordered[0], axis=1))
    d_last = np.min(np.linalg.norm(toward_start - ordered[-1], axis=1))
    return ordered if d_first <= d_last else ordered[::-1]


def parsed_branches(label: np.ndarray, spacing_zyx: tuple[float, float, float], name: str) -> tuple[
        list[np.ndarray], list[LabelBranch]]:
    """The parse of ``label`` (bool (Z, Y, X)): per branch its centreline voxel indices (K, 3) (z, y, x), parent
    end first, and LabelBranch records in index units (points_mm = indices * spacing, x, y, z order; the caller
    moves them to a frame). DataError naming ``name`` when the label holds no branch."""
    try:
        parsed = parse_tree(label, spacing_zyx, PARSE_CONNECTIVITY)
    except ValueError as error:
        raise DataError(f"{name}: {error}; give an airway label (nonzero = airway)") from None
    branches = parsed.tree.branches
    if not branches:
        raise DataError(f"{name}: the airway is too small to hold one branch (its skeleton has "
                        f"{parsed.skeleton.n_voxels} voxels); give a label with at least the trachea")
    offset = np.array([s.start for s in parsed.box])
    coords = parsed.skeleton.coords + offset
    spacing = np.asarray(spacing_zyx, float)
    by_id = {b.id: b for b in branches}
    children: dict[int, list[int]] = {}
    for b in branches:
        if b.parent is not None:
            children.setdefault(b.parent, []).append(b.id)
    indices, records = [], []
    for b in branches:
        own = coords[b.voxels].astype(float)
        if b.parent is not None:
            toward = coords[by_id[b.parent].voxels].astype(float)
            ordered = _ordered_points(own * spacing, toward * spacing)
        else:  # the trachea runs towards its children: start at the end away from them
            kids = [coords[by_id[c].voxels] for c in children.get(b.id, [])]
            toward = np.concatenate(kids).astype(float) if kids else own[:1]
            ordered = _ordered_points(own * spacing, toward * spacing)[::-1] if kids else own * spacing
        idx = np.rint(ordered / spacing).astype(int)
        indices.append(idx)
        records.append(LabelBranch(b.id, b.parent, b.generation, idx[:, ::-1].astype(float), float(b.radius_mm)))
    return indices, with_children(records)


def _in_frame(branches: list[LabelBranch], indices: list[np.ndarray], to_index, geometry: image_io.Geometry,
              ) -> list[LabelBranch]:
    """``branches`` with points_mm = origin + spacing * index in ``geometry``'s frame, indices mapped by ``to_index``."""
    origin, spacing = np.asarray(geometry.origin, float), np.asarray(geometry.spacing, float)
    return [dataclasses.replace(b, points_mm=origin + spacing * to_index(idx)[:, ::-1])
            for b, idx in zip(branches, indices, strict=True)]


def _canonical_index(axes: CanonicalAxes, shape_zyx: tuple[int, ...]):
    """Maps (K, 3) (z, y, x) indices of the source array to those of ``axes.to_canonical(source)``."""
    canonical_shape = np.asarray(shape_zyx)[list(axes.axes)]

    def to_canonical(idx: np.ndarray) -> np.ndarray:
        out = idx[:, list(axes.axes)].astype(float)
        for a in range(3):
            if axes.flip[a]:
                out[:, a] = canonical_shape[a] - 1 - out[:, a]
        return out
    return to_canonical


def resampled_label(label: np.ndarray, geometry: image_io.Geometry, spacing_xyz: Sequence[float],
                    ) -> tuple[np.ndarray, image_io.Geometry]:
    """``label`` (bool, identity direction) on a grid of ``spacing_xyz`` mm covering the same extent (first voxel
    centre half a new voxel inside the old grid's edge): linear interpolation of 0/1, airway where >= 0.5."""
    old = np.asarray(geometry.spacing, float)
    new = np.asarray(spacing_xyz, float)
    extent = np.asarray(label.shape[::-1]) * old
    shape_xyz = np.maximum(np.floor(extent / new + 1e-6).astype(int), 1)
    origin = np.asarray(geometry.origin) - old / 2.0 + new / 2.0
    # output voxel o (z, y, x) reads the input at (origin_new - origin_old + new * o) / old
    values = ndimage.affine_transform(label.astype(np.float32), (new / old)[::-1],
                                      offset=((origin - np.asarray(geometry.origin)) / old)[::-1],
                                      output_shape=tuple(int(n) for n in shape_xyz[::-1]), order=1, mode="nearest")
    return values >= 0.5, image_io.Geometry(tuple(float(v) for v in new), tuple(float(v) for v in origin))


def average_factor(source_spacing_xyz: Sequence[float], spacing_xyz: Sequence[float]) -> tuple[int, int, int]:
    """Per axis (z, y, x): how many drawn voxels average into one written voxel at ``spacing_xyz`` (mm) for a label
    of ``source_spacing_xyz``: floor(written / source), at most MAX_AVERAGE_FACTOR and DRAW_SPACING_MM per drawn
    voxel; 1 on every axis unless one reaches 2."""
    factor = [max(1, min(int(np.floor(new / old + 1e-6)), int(np.floor(new / DRAW_SPACING_MM + 1e-6)),
                         MAX_AVERAGE_FACTOR)) for old, new in zip(source_spacing_xyz, spacing_xyz, strict=True)]
    return (1, 1, 1) if max(factor) < 2 else (factor[2], factor[1], factor[0])


def _finer_grid(label: np.ndarray, lungs: np.ndarray | None, geometry: image_io.Geometry, shape_zyx: tuple[int, ...],
                written: image_io.Geometry, factor: tuple[int, int, int]):
    """(label, lungs, geometry, factor) resampled from ``label``/``lungs`` (on ``geometry``) onto the grid ``factor``
    times finer than the written one (``shape_zyx`` on ``written``): its blocks of ``factor`` voxels average into
    the written voxels (resampled_label puts both grids' first voxel half a voxel inside the source's edge)."""
    spacing = np.asarray(written.spacing) / np.asarray(factor[::-1])
    window = tuple(slice(0, n * k) for n, k in zip(shape_zyx, factor, strict=True))
    fine_label, fine_geometry = resampled_label(label, geometry, spacing)
    fine_lungs = None if lungs is None else resampled_label(lungs, geometry, spacing)[0][window]
    return fine_label[window], fine_lungs, fine_geometry, factor


def _label_crop(branches: list[LabelBranch], kind: str, shape_zyx: tuple[int, int, int], grid_shape: tuple[int, ...],
                geometry: image_io.Geometry, t_over_d: float, name: str) -> tuple[tuple[slice, slice, slice], Any]:
    """The window (slices) of a lung or lobe crop on the label's grid, chosen as for generated trees."""
    if any(s > n for s, n in zip(shape_zyx, grid_shape, strict=True)):
        raise DataError(f"{name}: the crop shape {tuple(shape_zyx)} is larger than the label's grid "
                        f"{tuple(grid_shape)}; give a smaller --shape")
    as_tree = [Branch(id=b.id, parent=b.parent, generation=b.generation, start=b.start, end=b.end,
                      radius=b.radius_mm, wall=float(wall_thickness_mm(b.radius_mm, t_over_d)),
                      plane_normal=np.zeros(3), children=list(b.children), labelled=True) for b in branches]
    index_of = {b.id: i for i, b in enumerate(branches)}
    for t in as_tree:  # choose_crop indexes branches by id: renumber to list positions
        t.id = index_of[t.id]
        t.parent = None if t.parent is None else index_of[t.parent]
        t.children = [index_of[c] for c in t.children]
    try:
        crop = choose_crop(as_tree, kind, shape_zyx, geometry.spacing, geometry.origin, CROP_MIN_STEPS)
    except CropDoesNotFit as error:
        raise DataError(f"{name}: {error}") from None
    offset = [int(np.clip(o, 0, n - s)) for o, n, s in zip(crop.offset_zyx, grid_shape, shape_zyx, strict=True)]
    window = tuple(slice(o, o + s) for o, s in zip(offset, shape_zyx, strict=True))
    return window, (crop, branches[crop.root].id, offset)  # type: ignore[return-value]


def _record(b: LabelBranch, wall_hu: float, t_over_d: float) -> dict[str, Any]:
    length = float(np.sum(np.linalg.norm(np.diff(b.points_mm, axis=0), axis=1))) if len(b.points_mm) > 1 else 0.0
    return {"id": b.id, "parent": b.parent, "generation": b.generation,
            "start_mm": [round(float(v), 3) for v in b.start], "end_mm": [round(float(v), 3) for v in b.end],
            "radius_mm": round(b.radius_mm, 4), "length_mm": round(length, 3), "labelled": True,
            "wall_thickness_mm": round(float(wall_thickness_mm(b.radius_mm, t_over_d)), 4),
            "wall_hu": round(wall_hu, 2), "children": list(b.children)}


def phantom_from_label(path: str | Path, seed: int, lung_mask: str | Path | None = None,
                       spacing_xyz: Sequence[float] | None = None, crop: str = "chest",
                       shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX, extend: bool = False,
                       case: str | None = None, binarize: bool = False,
                       lumen_margin_voxels: float | None = None) -> Phantom:
    """A phantom rendered around the airway label in ``path`` (nonzero = airway; any format image_io reads),
    deterministic in ``seed``. ``lung_mask``: a lung mask on the label's grid (nonzero = lung); None: lungs grown
    from the tree. ``spacing_xyz``: resample the label first. ``crop`` "lung" or "lobe": only a box of
    ``shape_zyx`` voxels around one lung's or lobe's subtree. ``extend``: thin branches past the terminal ones,
    in the CT only. ``binarize``: every value > 0 is airway (e.g. a 0/255 label); without it a label holding
    values other than 0 and 1 is refused. ``lumen_margin_voxels``: how far the lumen reaches past the label's
    border (voxels of the written grid; None: drawn from LABEL_RANGES). Clinical scanner model. DataError naming
    the file for anything wrong with the inputs."""
    path = Path(path)
    values, source_geometry = image_io.read_image(path)
    binarized = binarize and not is_binary(values)
    label = airway_mask(values, str(path), "label", binarize=binarize)  # refuses other values, naming --binarize
    if not label.any():
        raise DataError(f"{path}: the label has no airway voxels; give an airway label (nonzero = airway)")
    axes = canonical_axes(source_geometry.direction)
    if axes is None:
        raise DataError(f"{path}: the grid's direction {source_geometry.direction} is oblique; --from-label needs "
                        f"an axis-aligned grid: resample the label onto one first")
    lungs = None
    if lung_mask is not None:
        lung_values, lung_geometry = image_io.read_image(lung_mask)
        image_io.check_same_grid(path, values.shape, source_geometry, lung_mask, lung_values.shape, lung_geometry,
                                 "give the lung mask on the label's grid")
        lungs = axes.to_canonical(lung_values > 0)
    canonical = axes.to_canonical(label)
    geometry = canonical_geometry(source_geometry, values.shape, axes)
    resampled, drawn = None, None  # drawn: (label, lungs, geometry, factor) on the finer grid drawn and averaged
    if spacing_xyz is not None:
        source_canonical, source_lungs, source_canonical_geometry = canonical, lungs, geometry
        canonical, geometry = resampled_label(canonical, geometry, spacing_xyz)
        if lungs is not None:
            lungs = resampled_label(lungs, source_canonical_geometry, spacing_xyz)[0]
        factor = average_factor(source_canonical_geometry.spacing, geometry.spacing) if crop == "chest" else (1, 1, 1)
        resampled = {"from_spacing_xyz": list(source_geometry.spacing), "to_spacing_xyz": list(geometry.spacing),
                     "method": "linear interpolation of the 0/1 label, airway where >= 0.5; identity direction"}
        if factor != (1, 1, 1):
            drawn = _finer_grid(source_canonical, source_lungs, source_canonical_geometry, canonical.shape, geometry,
                                factor)
            resampled["ct"] = (f"drawn at {' x '.join(f'{v:g}' for v in np.round(drawn[2].spacing, 4))} mm around "
                               f"the label resampled there, then averaged over blocks of "
                               f"{' x '.join(map(str, factor[::-1]))} (x, y, z) voxels: partial volume")
        written_label, written_geometry, to_index = canonical, geometry, None
    else:
        written_label, written_geometry = label, source_geometry
        to_index = _canonical_index(axes, values.shape)
    if not canonical.any():
        raise DataError(f"{path}: no airway voxel is left at --spacing {tuple(spacing_xyz or ())}; give a finer spacing")
    spacing_zyx = geometry.spacing_zyx
    if to_index is None:  # parse the resampled label: its indices are the written ones
        indices, records = parsed_branches(canonical, spacing_zyx, str(path))
        canonical_branches = _in_frame(records, indices, lambda i: i, geometry)
        written_branches = canonical_branches
    else:  # parse the source label; draw in the canonical frame, record in the written one
        indices, records = parsed_branches(label, source_geometry.spacing_zyx, str(path))
        canonical_branches = _in_frame(records, indices, to_index, geometry)
        written_branches = _in_frame(records, indices, lambda i: i, source_geometry)

    rng = np.random.default_rng(int(seed))
    hu = clinical_intensities(rng)
    t_over_d = float(rng.uniform(*LABEL_RANGES["wall_t_over_d"][:2]))
    bronchoarterial = float(rng.uniform(*LABEL_RANGES["bronchoarterial"][:2]))
    margin_voxels = float(rng.uniform(*LABEL_RANGES["lumen_margin_voxels"][:2]))  # drawn always: the same stream
    if lumen_margin_voxels is not None:
        margin_voxels = float(lumen_margin_voxels)
    margin_mm = margin_voxels * float(min(geometry.spacing))  # voxels of the written grid
    window, crop_record = None, None
    if crop != "chest":
        if crop not in CROP_ROOT_GENERATION:
            raise ValueError(f"crop must be one of chest, lung, lobe, got {crop!r}")
        shape = tuple(int(n) for n in shape_zyx)
        window, (chosen, root_id, offset) = _label_crop(canonical_branches, crop, shape, canonical.shape, geometry,
                                                        t_over_d, str(path))
        crop_record = {"kind": crop, "root": root_id,
                       "root_generation": next(b.generation for b in canonical_branches if b.id == root_id),
                       "box_offset_zyx": offset, "shape_zyx": list(shape),
                       "generations": "absolute: the parse's trachea = 0",
                       "label": "the source label inside the box (every airway there, not only the root's subtree)"}
    if drawn is None:
        rendered = render_around_label(canonical, geometry, canonical_branches, hu, rng, t_over_d, bronchoarterial,
                                       lung_mask=lungs, extend=extend, window=window, lumen_margin_mm=margin_mm)
    else:  # the parse's branches are in mm, so they serve the finer grid as they are
        fine_label, fine_lungs, fine_geometry, factor = drawn
        rendered = render_around_label(fine_label, fine_geometry, canonical_branches, hu, rng, t_over_d,
                                       bronchoarterial, lung_mask=fine_lungs, extend=extend, average_zyx=factor,
                                       lumen_margin_mm=margin_mm)
    if window is None and to_index is not None:
        ct, out_label, out_geometry = axes.from_canonical(rendered.ct), written_label, written_geometry
    else:  # a crop or a resampled label: the canonical frame is the written one
        ct = rendered.ct
        out_label = canonical if window is None else canonical[window]
        origin = np.asarray(geometry.origin) + np.asarray(geometry.spacing) * (
            np.array([w.start for w in window][::-1]) if window is not None else 0.0)
        out_geometry = image_io.Geometry(geometry.spacing, tuple(float(v) for v in origin))
        written_branches = canonical_branches
    largest = written_branches[0].radius_mm
    truth = {
        "case": case, "seed": int(seed), "generator_version": GENERATOR_VERSION, "generator": "from_label",
        "source_label": {"name": path.name, "sha256": sha256(path), "shape_zyx": list(values.shape),
                         "spacing_xyz": list(source_geometry.spacing), "origin_xyz": list(source_geometry.origin),
                         "direction": list(source_geometry.direction),
                         "values": "binarized: every value > 0 written as 1" if binarized else "0 and 1"},
        "lung_mask": None if lung_mask is None else {"name": Path(lung_mask).name, "sha256": sha256(Path(lung_mask))},
        "lungs": "given" if lung_mask is not None else "grown from the tree",
        "label_resampled": resampled,
        "shape_zyx": list(out_label.shape), "spacing_xyz": list(out_geometry.spacing),
        "origin_xyz": list(out_geometry.origin), "direction": list(out_geometry.direction),
        "coordinates": "the written grid's frame in mm: point = origin + spacing * (i, j, k) for array index [k, j, "
                       "i], direction not applied",
        "crop": crop_record,
        "parse": {"connectivity": PARSE_CONNECTIVITY, "tool": "nnunet_airway.evaluation.reference.parse_tree"},
        "drawn": {"wall_t_over_d": round(t_over_d, 4), "bronchoarterial_ratio": round(bronchoarterial, 4),
                  "lumen_margin_voxels": round(margin_voxels, 4), "lumen_margin_mm": round(margin_mm, 4),
                  "n_vessels": rendered.vessels, "sources": {k: v.source for k, v in LABEL_RANGES.items()}},
        "branches": [_record(b, wall_intensity(b.radius_mm, largest, hu), t_over_d) for b in written_branches],
        "extension_branches": [
            {"id": e.id, "parent": e.parent, "generation": e.generation, "radius_mm": round(e.radius_mm, 4),
             "start_mm": [round(float(v), 3) for v in e.start], "end_mm": [round(float(v), 3) for v in e.end],
             "labelled": False} for e in rendered.extensions],
        "extension_frame": "the canonical (identity-direction) frame of the source grid" if (
            rendered.extensions and window is None and to_index is not None) else "as coordinates",
        "n_branches": len(written_branches), "n_labelled_branches": len(written_branches),
        "max_generation": max([b.generation for b in written_branches] + [e.generation for e in rendered.extensions]),
        "max_labelled_generation": max(b.generation for b in written_branches),
        "scanner_model": "clinical",
        "intensities_hu": {k: None if v is None else round(v, 2) for k, v in vars(hu).items()},
        "label_voxels": int(np.count_nonzero(out_label)),
    }
    return Phantom(ct=ct, label=np.asarray(out_label, np.uint8), geometry=out_geometry, truth=truth)


def write_label_phantoms(labels: Sequence[str | Path], out_dir: str | Path, seed: int = 0,
                         lung_masks: Sequence[str | Path] | None = None, spacing_xyz: Sequence[float] | None = None,
                         crop: str = "chest", shape_zyx: Sequence[int] = DEFAULT_SHAPE_ZYX, extend: bool = False,
                         preview: bool = False, overwrite: bool = False, binarize: bool = False) -> list[str]:
    """Write one phantom per label (files or folders; case names from the file names) into ``out_dir`` as
    ``write_phantoms`` does; case i uses ``case_seed(seed, i)``. ``lung_masks``: one per label, in order."""
    sources = label_sources(labels)
    masks: list[Path | None] = [None] * len(sources)
    if lung_masks:
        if len(lung_masks) != len(sources):
            raise DataError(f"--lung-mask: {len(lung_masks)} masks for {len(sources)} labels; give one mask per "
                            f"label, in the labels' order")
        masks = [Path(m) for m in lung_masks]
        for mask in masks:
            if not mask.is_file():
                raise DataError(f"{mask}: no such file; check the --lung-mask path")
    created = not Path(out_dir).exists()
    out = image_io.prepare_output_dir(out_dir, overwrite)
    cases: list[str] = []
    try:
        for index, ((case, path), mask) in enumerate(tqdm(list(zip(sources.items(), masks, strict=True)),
                                                          desc="phantoms", unit="case")):
            phantom = phantom_from_label(path, case_seed(seed, index), mask, spacing_xyz, crop, shape_zyx, extend,
                                         case=case, binarize=binarize)
            phantom.truth["base_seed"], phantom.truth["index"] = int(seed), index
            writing.write_image(out / "images" / f"{case}.nii.gz", phantom.ct, phantom.geometry)
            writing.write_image(out / "labels" / f"{case}.nii.gz", phantom.label, phantom.geometry)
            writing.write_json(out / "truth" / f"{case}.json", phantom.truth)
            if preview:
                write_preview(out / "previews" / f"{case}.png", phantom)
            cases.append(case)
    except BaseException:
        if created and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return cases
