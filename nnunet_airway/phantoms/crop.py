"""Crops at clinical resolution: the box around one lung's or one lobe's airway subtree.

An adult chest (anatomy scale 1) is grown on a virtual grid covering the whole chest at the requested
spacing (only its voxel coordinates exist); the crop is a box of the requested shape on that grid, placed
around the subtree of one branch (the crop's *root*, which enters the box through its boundary). Only the
root and its descendants are drawn as airways; the label holds those of them the whole-chest label rule
admits. The subtree is chosen so every labelled descendant lies inside the box with a margin; where the
whole lung's or lobe's subtree does not fit, the largest subtree below it that does is taken. Where the
root starts inside the box, its axis is drawn back to the box face (``entry_point``), as the lumen of its
parent would continue there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnunet_airway.phantoms.tree import Branch

CROPS: tuple[str, ...] = ("chest", "lung", "lobe")
# generation (trachea = 0) of the subtree a crop is meant to hold: main bronchus, lobar bronchus
CROP_ROOT_GENERATION: dict[str, int] = {"lung": 1, "lobe": 2}
MARGIN_VOXELS = 2  # free voxels between the labelled descendants' walls and the box faces
ROOT_STUB_RADII = 4.0  # least length of the root inside the box, in its lumen radii (plus the label's steps)


class CropDoesNotFit(ValueError):
    """No subtree of the crop's kind fits the box. ``label_too_shallow``: the tree has no candidate subtree with
    3 labelled branches at all (its label stops early; another tree may do), rather than a box too small."""

    def __init__(self, message: str, label_too_shallow: bool = False) -> None:
        super().__init__(message)
        self.label_too_shallow = label_too_shallow


def entry_point(branch: Branch, low_mm: np.ndarray, high_mm: np.ndarray, beyond: float) -> np.ndarray:
    """Where ``branch`` enters the box [low, high] (mm), ``beyond`` mm outside its face: its start when that
    lies outside the box, else the point where its axis, extended back through the start, leaves the box."""
    back = -branch.direction
    with np.errstate(divide="ignore"):
        t_faces = np.where(back != 0.0, np.maximum((low_mm - branch.end) / back, (high_mm - branch.end) / back),
                           np.inf)
    t_exit = float(t_faces.min())
    if t_exit <= branch.length:
        return branch.start.copy()
    return branch.end + (t_exit + beyond) * back


@dataclass(frozen=True)
class Crop:
    """Where a crop lies on the virtual whole-chest grid.

    kind: "lung" or "lobe"; root: id of the branch entering the box; subtree: ids of the root and all its
    descendants (drawn); offset_zyx: the box's first voxel on the virtual grid; shape_zyx: its size;
    low_mm, high_mm: the box's faces (x, y, z) in mm (voxel edges).
    """

    kind: str
    root: int
    subtree: tuple[int, ...]
    offset_zyx: tuple[int, int, int]
    shape_zyx: tuple[int, int, int]
    low_mm: tuple[float, float, float]
    high_mm: tuple[float, float, float]


def descendants(branches: list[Branch], root: int) -> list[int]:
    """``root`` and every branch below it, parents before children."""
    order, head = [root], 0
    while head < len(order):
        order.extend(branches[order[head]].children)
        head += 1
    return order


def _must_hold(branches: list[Branch], root: Branch, subtree: list[int], steps_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (x, y, z mm) the crop must hold: the labelled descendants' outer tubes and a stub of the root."""
    stub = min(root.length, ROOT_STUB_RADII * root.radius + steps_mm)
    stub_start = root.end - stub * root.direction
    low = [np.minimum(stub_start, root.end) - root.outer_radius]
    high = [np.maximum(stub_start, root.end) + root.outer_radius]
    for i in subtree[1:]:
        b = branches[i]
        if b.labelled:
            low.append(np.minimum(b.start, b.end) - b.outer_radius)
            high.append(np.maximum(b.start, b.end) + b.outer_radius)
    return np.min(low, axis=0), np.max(high, axis=0)


def choose_crop(branches: list[Branch], kind: str, shape_zyx: Sequence[int], spacing_xyz: Sequence[float],
                origin_xyz: Sequence[float], min_steps: float) -> Crop:
    """The crop of ``kind`` with ``shape_zyx`` voxels on the virtual grid (``origin_xyz``, ``spacing_xyz``).

    Candidates are the labelled branches of the kind's generation; one whose labelled subtree does not fit
    the box (with ``MARGIN_VOXELS`` and the root's stub) is replaced by its labelled children, recursively.
    The candidate with the most labelled branches is taken (ties: the lower id). The box is centred on what
    it must hold, then pushed away from the root's start as far as that allows, so the root enters through
    a face. Raises CropDoesNotFit (a ValueError) when not even a pair of labelled branches fits.
    """
    if kind not in CROP_ROOT_GENERATION:
        raise ValueError(f"crop must be one of {tuple(CROP_ROOT_GENERATION)}, got {kind!r}")
    spacing = np.asarray(spacing_xyz, float)
    extent = np.asarray(shape_zyx[::-1], float) * spacing
    room = extent - 2.0 * MARGIN_VOXELS * spacing
    steps_mm = min_steps * float(spacing.max())
    queue = [b.id for b in branches if b.generation == CROP_ROOT_GENERATION[kind] and b.labelled]
    best: tuple[int, int, np.ndarray, np.ndarray, list[int]] | None = None
    any_candidate = False  # a subtree with 3 labelled branches was seen (so only the box was too small)
    while queue:
        i = queue.pop(0)
        subtree = descendants(branches, i)
        n_labelled = sum(branches[j].labelled for j in subtree)
        if n_labelled < 3:
            continue
        any_candidate = True
        low, high = _must_hold(branches, branches[i], subtree, steps_mm)
        if np.all(high - low <= room):
            if best is None or n_labelled > best[0] or (n_labelled == best[0] and i < best[1]):
                best = (n_labelled, i, low, high, subtree)
        else:
            queue.extend(c for c in branches[i].children if branches[c].labelled)
    if best is None:
        raise CropDoesNotFit(f"no labelled {kind} subtree fits a box of {tuple(shape_zyx)} voxels at "
                             f"{tuple(float(s) for s in spacing)} mm; give more voxels or a coarser spacing",
                             label_too_shallow=not any_candidate)
    _, root_id, low, high, subtree = best
    root = branches[root_id]
    origin = np.asarray(origin_xyz, float)
    centre = (low + high) / 2.0
    # box faces (mm) = origin - spacing / 2 + offset * spacing; shift within the slack, away from the root's start
    slack = (room - (high - low)) / 2.0
    away = np.where(root.start < centre, 1.0, -1.0)
    box_low = centre - extent / 2.0 + away * slack
    offset = np.rint((box_low - (origin - spacing / 2.0)) / spacing).astype(int)
    box_low = origin - spacing / 2.0 + offset * spacing
    return Crop(kind=kind, root=root_id, subtree=tuple(subtree), offset_zyx=tuple(int(v) for v in offset[::-1]),
                shape_zyx=tuple(int(n) for n in shape_zyx), low_mm=tuple(float(v) for v in box_low),
                high_mm=tuple(float(v) for v in box_low + extent))
