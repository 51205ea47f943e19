"""A chest CT rendered around a given airway lumen label (a real tree): the label is the lumen, and walls,
arteries, veins, lungs and the chest wall are drawn around it as on generated phantoms.

Inputs are plain arrays: the label (bool, (Z, Y, X)) on a grid with identity direction (``canonical_axes``
brings any axis-aligned grid there), and its centreline tree as ``LabelBranch`` records, which a caller
parses from the label (this module parses nothing). Lengths in mm, positions in the grid's physical frame.

Layers, back to front:
- chest wall (``fitted_chest``): body cylinder, fat, spine, ribs and table fitted around the lungs;
- lungs: a given mask, or grown from the tree (``grown_lungs``): within ``LUNG_REACH_MM`` of the convex hull
  of the centreline below either main bronchus, clear of the trachea and with a mediastinal gap between the sides;
- vessels: an artery beside every bronchus from the main bronchi on, its calibre set by the case's
  bronchoarterial ratio, and a vein on the bundle's far side (veins run between the bronchovascular bundles);
- walls: every voxel outside the label within the wall thickness of its local lumen calibre, the calibre read
  as (distance to the centreline) - (distance to the lumen), the thickness from the case's T/D ratio;
- extension branches (optional): thin airways grown past the terminal branches, in the CT only;
- lumen: the label's voxels.
The scanner model (blur, noise) is applied last, as for generated phantoms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from nnunet_airway.image_io import Geometry
from nnunet_airway.phantoms.anatomy import Chest, Lung
from nnunet_airway.phantoms.render import (
    Grid,
    Intensities,
    add_lung_tissue,
    chest_wall,
    inside_fraction,
    iter_tube_distances,
    scanned,
    tube_fraction,
    wall_intensity,
)
from nnunet_airway.phantoms.scanner import Range
from nnunet_airway.phantoms.tree import TreeParameters

# ranges drawn per case (uniformly), with where they come from; quoted from memory of the cited work
LABEL_RANGES: dict[str, Range] = {
    "wall_t_over_d": Range(0.15, 0.20,
                           "bronchial wall thickness over the bronchus' total diameter (T/D) at segmental and "
                           "subsegmental level on thin-section CT of asymptomatic adults: about 0.15-0.2, not "
                           "varying with age (Matsuoka et al., AJR 2003;180:513-518)"),
    "bronchoarterial": Range(0.65, 0.95,
                             "bronchoarterial ratio (lumen diameter over the accompanying artery's diameter): "
                             "below 1 in most adults, rising with age (Matsuoka et al., AJR 2003)"),
    "lumen_margin_voxels": Range(0.0, 0.6,
                                 "how far the lumen reaches past the label's border, in voxels of the written grid: "
                                 "labels end where the lumen's partial volume ends, so the voxel ring around the "
                                 "labels of the two real CTs beside this project reads between lumen and wall, "
                                 "a lumen share of about 0.3 (4.2 mm COPDGene) and 0.55 (1.5 mm TotalSegmentator); "
                                 "this project's measurement (docs/clinical-phantoms.md); 0: the label is the whole "
                                 "lumen"),
}
WALL_MAX_MM = 2.5  # the thickest wall drawn (the trachea's is about 1.5-3 mm): this project's cap
VEIN_TO_ARTERY = 0.85  # vein radius over its bundle's artery radius: this project's assumption
LUNG_REACH_MM = 25.0  # grown lungs reach this far past the convex hull of a side's centreline (terminal labelled
# bronchi lie 1-4 cm inside the pleura in reference-quality trees): this project's assumption
MEDIASTINAL_GAP_MM = 14.0  # least tissue between the two grown lungs
TRACHEA_CLEARANCE_MM = 18.0  # grown lung keeps this far from the trachea's centreline
DEEP_RULES = TreeParameters()  # the generator's branching rules, for --extend
LUNG_STEP_MM = 2.0  # the grown lungs' distances are computed on a grid of this step, then interpolated


@dataclass(frozen=True)
class LabelBranch:
    """One parsed branch of the label: ``points_mm`` (K, 3) x, y, z along its centreline from the parent's end,
    ``radius_mm`` its median lumen radius, ``generation`` from the parse's trachea (0)."""

    id: int
    parent: int | None
    generation: int
    points_mm: np.ndarray
    radius_mm: float
    children: tuple[int, ...] = ()

    @property
    def start(self) -> np.ndarray:
        return self.points_mm[0]

    @property
    def end(self) -> np.ndarray:
        return self.points_mm[-1]


def wall_thickness_mm(radius_mm, t_over_d: float):
    """Wall thickness (mm) of a lumen of ``radius_mm`` at a T/D ratio: t = T/D * 2 (r + t), capped at WALL_MAX_MM."""
    return np.minimum(2.0 * t_over_d * np.asarray(radius_mm, float) / (1.0 - 2.0 * t_over_d), WALL_MAX_MM)


class CanonicalAxes(NamedTuple):
    """How an axis-aligned grid maps to one with identity direction: ``axes`` the array axes in (z, y, x) order
    of the physical axes, ``flip`` which of those run against their physical axis."""

    axes: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    def to_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.transpose(array, self.axes)
        return np.ascontiguousarray(np.flip(out, [a for a in range(3) if self.flip[a]]) if any(self.flip) else out)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        out = np.flip(array, [a for a in range(3) if self.flip[a]]) if any(self.flip) else array
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.axes)))


def canonical_axes(direction: tuple[float, ...], tolerance: float = 1e-3) -> CanonicalAxes | None:
    """The permutation and flips that bring a grid of ``direction`` (row-major 3x3) to identity; None when the
    direction is oblique (not a signed permutation within ``tolerance``)."""
    m = np.asarray(direction, float).reshape(3, 3)  # column c: physical direction of index axis c (x = 0)
    index_axis = np.abs(m).argmax(axis=1)  # for physical axis p, the index axis along it
    if sorted(index_axis) != [0, 1, 2] or np.any(np.abs(np.abs(m[np.arange(3), index_axis]) - 1.0) > tolerance):
        return None
    # numpy axis of index axis c is 2 - c; canonical numpy order is physical (z, y, x) = p (2, 1, 0)
    axes = tuple(int(2 - index_axis[p]) for p in (2, 1, 0))
    flip = tuple(bool(m[p, index_axis[p]] < 0) for p in (2, 1, 0))
    return CanonicalAxes(axes, flip)  # type: ignore[arg-type]


def canonical_geometry(geometry: Geometry, shape_zyx: tuple[int, ...], axes: CanonicalAxes) -> Geometry:
    """The identity-direction geometry of the canonical array: spacing per physical axis, origin at its first voxel."""
    m = np.asarray(geometry.direction, float).reshape(3, 3)
    size_xyz = np.asarray(shape_zyx[::-1], float)
    spacing_xyz = np.asarray(geometry.spacing, float)
    index_axis = np.abs(m).argmax(axis=1)
    corner = np.asarray(geometry.origin, float).copy()
    for p in range(3):  # the canonical first voxel: the far end of every index axis that runs backwards
        c = index_axis[p]
        if m[p, c] < 0:
            corner = corner + m[:, c] * spacing_xyz[c] * (size_xyz[c] - 1)
    return Geometry(tuple(float(spacing_xyz[index_axis[p]]) for p in range(3)), tuple(float(v) for v in corner))


def _step_grid(grid: Grid, step: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and per-axis (z, y, x) step in voxels of a coarse grid over ``grid`` with about ``step`` mm spacing."""
    factor = np.maximum(np.floor(step / grid.spacing[::-1]), 1.0)
    shape = tuple(int(np.ceil(n / f)) + 1 for n, f in zip(grid.shape, factor, strict=True))
    return shape, factor  # type: ignore[return-value]


def _upsample(coarse: np.ndarray, factor: np.ndarray, window: tuple[slice, slice, slice]) -> np.ndarray:
    """Linear interpolation of ``coarse`` (sampled every ``factor`` voxels from voxel 0) at the voxels of ``window``."""
    out = coarse.astype(np.float32)
    for axis, (sl, f) in enumerate(zip(window, factor, strict=True)):
        pos = np.arange(sl.start, sl.stop) / f
        left = np.clip(np.floor(pos).astype(int), 0, out.shape[axis] - 2)
        frac = (pos - left).astype(np.float32)
        a, b = np.take(out, left, axis=axis), np.take(out, left + 1, axis=axis)
        shape_f = [1, 1, 1]
        shape_f[axis] = len(pos)
        out = a + (b - a) * frac.reshape(shape_f)
    return out


def _mark(points_mm: np.ndarray, origin: np.ndarray, step_xyz: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bool (Z, Y, X) array of ``shape`` with the cells holding ``points_mm`` set."""
    mask = np.zeros(shape, bool)
    if len(points_mm):
        idx = np.rint((points_mm - origin) / step_xyz).astype(int)[:, ::-1]
        keep = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
        mask[tuple(idx[keep].T)] = True
    return mask


def _hull_mask(points_mm: np.ndarray, origin: np.ndarray, step_xyz: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bool (Z, Y, X) cells of a grid (``origin``, ``step_xyz`` mm) inside the convex hull of ``points_mm``; the
    cells holding the points where they span no volume."""
    marked = _mark(points_mm, origin, step_xyz, shape)
    if len(points_mm) < 4:
        return marked
    try:
        hull = Delaunay(points_mm)
    except QhullError:  # the points lie in a plane or on a line
        return marked
    low = np.maximum(np.floor((points_mm.min(axis=0) - origin) / step_xyz).astype(int), 0)
    high = np.minimum(np.ceil((points_mm.max(axis=0) - origin) / step_xyz).astype(int) + 1, np.asarray(shape[::-1]))
    axes = [origin[a] + step_xyz[a] * np.arange(low[a], high[a]) for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    inside = hull.find_simplex(np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)) >= 0
    marked[low[2]:high[2], low[1]:high[1], low[0]:high[0]] |= inside.reshape(zz.shape)
    return marked


def _subtree_points(branches: list[LabelBranch], root: int, min_generation: int) -> np.ndarray:
    by_id = {b.id: b for b in branches}
    order, points = [root], []
    while order:
        b = by_id[order.pop()]
        if b.generation >= min_generation:
            points.append(b.points_mm)
        order.extend(b.children)
    return np.concatenate(points) if points else np.zeros((0, 3))


class CoarseLungs(NamedTuple):
    """Grown lungs' signed depth (mm, positive inside) every ``factor`` voxels of the label's grid."""

    depth: np.ndarray
    factor: np.ndarray

    def at(self, window: tuple[slice, slice, slice]) -> np.ndarray:
        return _upsample(self.depth, self.factor, window)

    def bounds_mm(self, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
        inside = self.depth > 0
        if not inside.any():
            return None
        idx = [np.nonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in (2, 1, 0)]
        step_xyz = self.factor[::-1] * grid.spacing
        low = grid.origin + step_xyz * np.array([i.min() for i in idx])
        high = grid.origin + step_xyz * np.array([i.max() for i in idx])
        return low, np.minimum(high, grid.origin + grid.spacing * (np.asarray(grid.shape[::-1]) - 1))


def grown_lungs(grid: Grid, branches: list[LabelBranch]) -> CoarseLungs:
    """Lungs grown from the tree on the whole label grid: within LUNG_REACH_MM of the convex hull of the centreline
    of either main bronchus' subtree (from generation 2; the main bronchus itself where it has no children), at least
    TRACHEA_CLEARANCE_MM from the trachea's, the two sides MEDIASTINAL_GAP_MM apart."""
    coarse_shape, factor = _step_grid(grid, LUNG_STEP_MM)
    step_zyx = factor * grid.spacing[::-1]
    trachea = next((b for b in branches if b.parent is None), None)
    if trachea is None:
        return CoarseLungs(np.full(coarse_shape, -LUNG_REACH_MM, np.float32), factor)
    far = np.full(coarse_shape, 1e6, np.float32)
    side_distances = []
    for side in [b for b in branches if b.parent == trachea.id][:2]:
        points = _subtree_points(branches, side.id, 2 if side.children else 1)
        hull = _hull_mask(points, grid.origin, step_zyx[::-1], coarse_shape)
        side_distances.append(ndimage.distance_transform_edt(~hull, sampling=step_zyx).astype(np.float32)
                              if hull.any() else far)
    while len(side_distances) < 2:
        side_distances.append(far)
    near, other = np.minimum(*side_distances), np.maximum(*side_distances)
    depth = np.minimum(LUNG_REACH_MM - near, (other - near - MEDIASTINAL_GAP_MM) / 2.0)
    marked = _mark(trachea.points_mm, grid.origin, step_zyx[::-1], coarse_shape)
    clearance = ndimage.distance_transform_edt(~marked, sampling=step_zyx).astype(np.float32) - TRACHEA_CLEARANCE_MM
    return CoarseLungs(np.minimum(depth, clearance), factor)


def mask_bounds_mm(mask: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """Physical (x, y, z) mm of the first and last voxel centres of ``mask``'s bounding box, or None if empty."""
    if not mask.any():
        return None
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in (2, 1, 0)]
    return (grid.origin + grid.spacing * np.array([i.min() for i in idx]),
            grid.origin + grid.spacing * np.array([i.max() for i in idx]))


def fitted_chest(low: np.ndarray, high: np.ndarray, rng: np.random.Generator, trachea_radius: float) -> Chest:
    """A chest (body, fat, spine, ribs) fitted around lungs whose bounding box is [low, high] (x, y, z mm): the
    body an elliptic cylinder 25-35 mm outside it in x and y, the spine between the lungs' backs."""
    centre = (low + high) / 2.0
    half = np.maximum((high - low) / 2.0, 1.0)
    wall = float(rng.uniform(25.0, 35.0))
    sides = []
    for sign in (-1.0, 1.0):  # right (x < centre), left: the rib cage's z range is what the ribs read
        c = (float(centre[0] + sign * half[0] / 2.0), float(centre[1]), float(centre[2]))
        sides.append(Lung(centre=c, semi_axes=(float(half[0] / 2.0), float(half[1]), float(half[2])),
                          dome_top_z=float(low[2]), dome_height=0.0))
    carina = (float(centre[0]), float(centre[1]), float(high[2]))
    return Chest(
        centre=(float(centre[0]), float(centre[1]), float(centre[2])), top_z=float(high[2]), scale=1.0,
        body_semi_axes=(float(half[0] + wall), float(half[1] + wall)),
        body_centre_xy=(float(centre[0]), float(centre[1])), fat_thickness=float(rng.uniform(8.0, 20.0)),
        lungs=(sides[0], sides[1]), heart_centre=carina, heart_semi_axes=(1.0, 1.0, 1.0),
        spine_centre_xy=(float(centre[0]), float(high[1] - 22.0)), spine_radius=19.0,
        rib_period=float(rng.uniform(24.0, 28.0)), rib_slope=float(rng.uniform(0.35, 0.5)),
        rib_phase=float(rng.uniform(0.0, 1.0)), trachea_top=carina, carina=carina, trachea_radius=trachea_radius,
    )


def _perpendicular(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    v -= direction * (v @ direction)
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def bundle_vessels(branches: list[LabelBranch], t_over_d: float, bronchoarterial: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, radii) mm of the vessels: per branch from the main bronchi on, an artery beside it (radius =
    lumen radius / bronchoarterial ratio) continuing its parent's artery, and a vein on the far side."""
    starts, ends, radii = [], [], []
    artery_end: dict[int, np.ndarray] = {}
    side_of: dict[int, np.ndarray] = {}
    for b in branches:  # parents before children
        if b.parent is None:
            continue
        axis = _unit(b.end - b.start)
        side = side_of.get(b.parent)
        side = _perpendicular(axis, rng) if side is None else _unit(side - axis * (side @ axis))
        side_of[b.id] = side
        outer = b.radius_mm + float(wall_thickness_mm(b.radius_mm, t_over_d))
        artery = b.radius_mm / bronchoarterial
        offset = side * (outer + artery + rng.uniform(0.3, 1.0))
        start = artery_end.get(b.parent, b.start + offset)
        artery_end[b.id] = b.end + offset
        starts.append(start)
        ends.append(artery_end[b.id])
        radii.append(artery)
        vein = artery * VEIN_TO_ARTERY
        vein_offset = -side * (outer + vein + rng.uniform(1.5, 3.0) * outer)
        starts.append(b.start + vein_offset)
        ends.append(b.end + vein_offset)
        radii.append(vein)
    return np.array(starts).reshape(-1, 3), np.array(ends).reshape(-1, 3), np.array(radii)


@dataclass(frozen=True)
class Extension:
    """A thin branch grown past the label (CT only): ``parent`` is a LabelBranch id or another extension's id
    (negative: -1, -2, ...); ``generation`` absolute (the parse's)."""

    id: int
    parent: int
    generation: int
    start: np.ndarray
    end: np.ndarray
    radius_mm: float


def grow_extensions(branches: list[LabelBranch], lung_share_at, lumen_distance_at, min_radius: float,
                    rng: np.random.Generator, generations: int = 3,
                    params: TreeParameters = DEEP_RULES) -> list[Extension]:
    """Up to ``generations`` of dichotomous branches past every terminal branch, by the generator's rules for
    deep airways (``params``): the wider child's radius ``deep_major_ratio`` of the parent's and
    ``major_angle`` off its axis, the narrower one's ``deep_minor_ratio`` and ``minor_angle`` to the other side,
    in a random plane, ``length_per_radius`` radii long; a child is kept while its end lies
    wholly in the lungs, its middle and end more than its radius + 0.5 mm from the label, and its radius is at
    least ``min_radius``. ``lung_share_at`` and ``lumen_distance_at`` map points (K, 3) mm to the lung share (0-1)
    and the distance to the label (mm). Extensions are not kept clear of each other."""
    grown: list[Extension] = []
    tips = []
    for b in branches:
        if b.children or b.parent is None or len(b.points_mm) < 2:
            continue
        tail = b.points_mm[-min(len(b.points_mm), 6):]
        tips.append((b.id, b.generation, b.end, _unit(tail[-1] - tail[0]), b.radius_mm))
    next_id = -1
    for _ in range(generations):
        new_tips = []
        for parent, generation, point, axis, radius in tips:
            normal = _perpendicular(axis, rng)
            for k, (ratio, angle) in enumerate(((rng.uniform(*params.deep_major_ratio), rng.uniform(*params.major_angle)),
                                                (rng.uniform(*params.deep_minor_ratio), rng.uniform(*params.minor_angle)))):
                r = radius * ratio
                if r < min_radius:
                    continue
                theta = np.radians(angle) * (1.0 if k == 0 else -1.0)
                direction = _unit(axis * np.cos(theta) + normal * np.sin(theta))
                end = point + direction * r * rng.uniform(*params.length_per_radius)
                probe = np.stack([point + (end - point) * f for f in (0.5, 1.0)])
                if lung_share_at(probe[-1:])[0] < 0.99 or np.min(lumen_distance_at(probe)) < r + 0.5:
                    continue
                grown.append(Extension(next_id, parent, generation + 1, point.copy(), end, float(r)))
                new_tips.append((next_id, generation + 1, end, direction, r))
                next_id -= 1
        tips = new_tips
    return grown


def _point_sampler(field: np.ndarray, grid: Grid, outside: float):
    """Nearest-voxel lookup of ``field`` (on ``grid``) at points (K, 3) mm; ``outside`` off the grid."""
    def at(points_mm: np.ndarray) -> np.ndarray:
        idx = np.rint((np.asarray(points_mm) - grid.origin) / grid.spacing).astype(int)[:, ::-1]
        inside = np.all((idx >= 0) & (idx < np.asarray(grid.shape)), axis=1)
        values = np.full(len(idx), outside, np.float32)
        values[inside] = field[tuple(idx[inside].T)]
        return values
    return at


class RenderedAroundLabel(NamedTuple):
    ct: np.ndarray  # int16 HU on the window
    lungs: np.ndarray  # bool on the window: lung share over one half
    vessels: int
    extensions: list[Extension]


def _window_grid(geometry: Geometry, window: tuple[slice, slice, slice]) -> Grid:
    shape = tuple(sl.stop - sl.start for sl in window)
    origin = np.asarray(geometry.origin) + np.asarray(geometry.spacing) * np.array([window[2].start, window[1].start,
                                                                                   window[0].start])
    return Grid(shape, Geometry(geometry.spacing, tuple(float(v) for v in origin)))  # type: ignore[arg-type]


def _grown(window: tuple[slice, slice, slice], margin: int, shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    return tuple(slice(max(sl.start - margin, 0), min(sl.stop + margin, n))  # type: ignore[return-value]
                 for sl, n in zip(window, shape, strict=True))


def render_around_label(label: np.ndarray, geometry: Geometry, branches: list[LabelBranch], hu: Intensities,
                        rng: np.random.Generator, t_over_d: float, bronchoarterial: float,
                        lung_mask: np.ndarray | None = None, extend: bool = False,
                        window: tuple[slice, slice, slice] | None = None,
                        extension_min_radius: float = 0.3,
                        average_zyx: tuple[int, int, int] = (1, 1, 1),
                        lumen_margin_mm: float = 0.0) -> RenderedAroundLabel:
    """CT (int16 HU) of ``window`` (default: all) of the grid of ``label`` (bool (Z, Y, X), identity direction),
    drawn around the label from its parsed ``branches`` in the layers of the module docstring. ``lung_mask``
    (bool, the label's grid): the lungs; None: grown from the tree. The chest is fitted to the whole grid.
    ``average_zyx``: draw on the label's (fine) grid, then average blocks of that many voxels per axis into the
    CT's voxels before the scanner model (partial volume of a coarse scan: a voxel holds the mean of what lies in
    it); the label's shape must be a multiple of it, and there is no window then. ``lumen_margin_mm``: the lumen's
    surface lies this far past the label's border (air in the voxels there, the label unchanged), the wall beyond."""
    if lumen_margin_mm < 0:
        raise ValueError(f"lumen_margin_mm must be >= 0, got {lumen_margin_mm}")
    if any(abs(d - i) > 1e-6 for d, i in zip(geometry.direction, (1, 0, 0, 0, 1, 0, 0, 0, 1), strict=True)):
        raise ValueError("render_around_label needs an identity direction; bring the arrays there with canonical_axes")
    factor = tuple(int(k) for k in average_zyx)
    if factor != (1, 1, 1) and (window is not None or any(n % k for n, k in zip(label.shape, factor, strict=True))):
        raise ValueError(f"average_zyx {factor} needs the whole grid and a shape {label.shape} divisible by it")
    label = np.asarray(label, bool)
    window = tuple(slice(0, n) for n in label.shape) if window is None else window  # type: ignore[assignment]
    full = Grid(label.shape, geometry)
    grid = _window_grid(geometry, window)
    voxel = grid.voxel
    if lung_mask is None:
        coarse = grown_lungs(full, branches)
        bounds = coarse.bounds_mm(full)
        lung_share = inside_fraction(coarse.at(window), voxel).astype(np.float32)
    else:
        lung_mask = np.asarray(lung_mask, bool)
        bounds = mask_bounds_mm(lung_mask, full)
        lung_share = ndimage.gaussian_filter(lung_mask[window].astype(np.float32), 0.5)
    if bounds is None:  # no lungs at all: a body around the whole grid
        bounds = (full.origin, full.origin + full.spacing * (np.asarray(full.shape[::-1]) - 1))
    lung_share[label[window]] = 1.0  # the tree lies in the lungs (the lumen covers it anyway)
    trachea = next((b for b in branches if b.parent is None), None)
    largest = trachea.radius_mm if trachea is not None else max((b.radius_mm for b in branches), default=8.0)
    chest = fitted_chest(*bounds, rng, largest)
    volume = chest_wall(grid, chest, hu)
    add_lung_tissue(volume, grid, (slice(None),) * 3, lung_share, chest, hu, rng)  # type: ignore[arg-type]

    vessels = bundle_vessels(branches, t_over_d, bronchoarterial, rng)
    vessel_share = np.zeros(grid.shape, np.float32)
    for i, box, dist in iter_tube_distances(grid, vessels[0], vessels[1], vessels[2] + voxel):
        region = vessel_share[box]
        np.maximum(region, tube_fraction(dist, float(vessels[2][i]), voxel), out=region)
    vessel_share *= np.clip(lung_share * 2.0, 0.0, 1.0)  # vessels are drawn inside the lungs only
    volume += (np.float32(hu.vessel) - volume) * vessel_share
    del vessel_share

    reach = int(np.ceil((WALL_MAX_MM + 2.0 * voxel) / grid.spacing.min())) + 1
    outer = _grown(window, reach, label.shape)
    inner = tuple(slice(w.start - o.start, w.stop - o.start) for w, o in zip(window, outer, strict=True))
    wall_share, wall_hu, lumen_distance, past_label = _label_walls(label[outer], _window_grid(geometry, outer),
                                                                   branches, t_over_d, largest, hu, lumen_margin_mm)
    wall_share, wall_hu, lumen_distance = wall_share[inner], wall_hu[inner], lumen_distance[inner]
    lumen_share = np.maximum(label[window].astype(np.float32), past_label[inner])
    extensions: list[Extension] = []
    if extend:
        extensions = grow_extensions(branches, _point_sampler(lung_share, grid, 0.0),
                                     _point_sampler(lumen_distance, grid, 1e3), extension_min_radius, rng)
        for ext in extensions:
            wall = float(wall_thickness_mm(ext.radius_mm, t_over_d))
            for _, box, dist in iter_tube_distances(grid, ext.start[None], ext.end[None],
                                                    np.array([ext.radius_mm + wall + voxel])):
                share = tube_fraction(dist, ext.radius_mm + wall, voxel)
                won = share > wall_share[box]
                wall_share[box][won] = share[won]
                wall_hu[box][won] = wall_intensity(ext.radius_mm, largest, hu)
                region = lumen_share[box]
                np.maximum(region, tube_fraction(dist, ext.radius_mm, voxel), out=region)
    volume += (wall_hu - volume) * wall_share
    volume += (np.float32(hu.lumen) - volume) * lumen_share
    if factor != (1, 1, 1):
        volume, lung_share = block_mean(volume, factor), block_mean(lung_share, factor)
        grid = coarser_grid(grid, factor)
    return RenderedAroundLabel(scanned(volume, grid, hu, rng), lung_share > 0.5, len(vessels[2]), extensions)


def block_mean(array: np.ndarray, factor_zyx: tuple[int, int, int]) -> np.ndarray:
    """Mean over non-overlapping blocks of ``factor_zyx`` voxels (the shape a multiple of it) -> (Z/kz, Y/ky, X/kx)."""
    (kz, ky, kx), (z, y, x) = factor_zyx, array.shape
    return array.reshape(z // kz, kz, y // ky, ky, x // kx, kx).mean(axis=(1, 3, 5), dtype=np.float32)


def coarser_grid(grid: Grid, factor_zyx: tuple[int, int, int]) -> Grid:
    """The grid whose voxels are blocks of ``factor_zyx`` voxels of ``grid`` (centres at the blocks' centres)."""
    k_xyz = np.asarray(factor_zyx[::-1], float)
    spacing = grid.spacing * k_xyz
    origin = grid.origin + (k_xyz - 1.0) / 2.0 * grid.spacing
    shape = tuple(n // k for n, k in zip(grid.shape, factor_zyx, strict=True))
    return Grid(shape, Geometry(tuple(float(v) for v in spacing), tuple(float(v) for v in origin)))


def _label_walls(label: np.ndarray, grid: Grid, branches: list[LabelBranch], t_over_d: float, largest: float,
                 hu: Intensities, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(wall share, wall HU, distance to the label in mm, lumen share outside the label) on the grid: the lumen
    reaches ``margin_mm`` past the label's border, and the wall of every voxel beyond lies within the thickness
    of its local calibre (distance to the centreline minus distance to the label)."""
    wall_share = np.zeros(grid.shape, np.float32)
    wall_hu = np.zeros(grid.shape, np.float32)
    lumen_distance = np.full(grid.shape, 1e3, np.float32)
    past_label = np.zeros(grid.shape, np.float32)
    if not label.any():
        return wall_share, wall_hu, lumen_distance, past_label
    spacing_zyx = grid.spacing[::-1]
    reach = int(np.ceil((WALL_MAX_MM + 2.0 * grid.voxel) / spacing_zyx.min())) + 1
    nz = [np.nonzero(label.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)]
    box = tuple(slice(max(int(i.min()) - reach, 0), min(int(i.max()) + reach + 1, n))
                for i, n in zip(nz, label.shape, strict=True))  # the label's bounding box and the walls' reach
    lumen = label[box]
    centreline = np.zeros(lumen.shape, bool)
    offset_mm = grid.origin + grid.spacing * np.array([box[2].start, box[1].start, box[0].start])
    for b in branches:
        idx = np.rint((b.points_mm - offset_mm) / grid.spacing).astype(int)[:, ::-1]
        keep = np.all((idx >= 0) & (idx < np.asarray(lumen.shape)), axis=1)
        centreline[tuple(idx[keep].T)] = True
    centreline &= lumen
    d_lumen = ndimage.distance_transform_edt(~lumen, sampling=spacing_zyx).astype(np.float32)
    lumen_distance[box] = d_lumen
    if not centreline.any():
        return wall_share, wall_hu, lumen_distance, past_label
    d_centre = ndimage.distance_transform_edt(~centreline, sampling=spacing_zyx).astype(np.float32)
    calibre = np.maximum(d_centre - d_lumen, 0.5 * grid.voxel)  # the lumen radius met on the way to the centreline
    del d_centre
    thickness = wall_thickness_mm(calibre, t_over_d).astype(np.float32)
    # the label's surface lies half a voxel beyond the centres of its border voxels, the lumen's margin_mm further
    past_surface = d_lumen - 0.5 * grid.voxel - np.float32(margin_mm)
    air = inside_fraction(-past_surface, grid.voxel).astype(np.float32)
    air[lumen] = 0.0
    share = np.clip(inside_fraction(thickness - past_surface, grid.voxel) - air, 0.0, 1.0).astype(np.float32)
    share[lumen] = 0.0
    wall_share[box] = share
    past_label[box] = air
    calibre_share = np.clip(calibre / largest, 0.0, 1.0) ** 0.6
    wall_hu[box] = (hu.wall_small + (hu.wall_large - hu.wall_small) * calibre_share).astype(np.float32)
    return wall_share, wall_hu, lumen_distance, past_label


def with_children(branches: list[LabelBranch]) -> list[LabelBranch]:
    """The branches with their ``children`` filled from the parents."""
    children: dict[int, list[int]] = {}
    for b in branches:
        if b.parent is not None:
            children.setdefault(b.parent, []).append(b.id)
    return [replace(b, children=tuple(children.get(b.id, ()))) for b in branches]
