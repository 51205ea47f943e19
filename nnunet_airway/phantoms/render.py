"""Turning the chest and the airway tree into CT intensities (HU) and the airway label on a voxel grid.

Partial volume is distance based: a voxel whose centre lies at signed depth ``t`` (mm) inside a
surface takes the fraction ``clip(0.5 + t / s, 0, 1)`` of the inner material, ``s`` the voxel size.
Tubes thinner than a voxel also lose peak contrast in proportion to the share of the voxel they fill,
so distal bronchioles fade the way they do in real CT. Layers are composed back to front: body, ribs
and spine, lungs, vessels, airway walls, airway lumens. Walls and lumens of all branches are first
combined with a maximum, so a child's wall never closes its parent's lumen at a junction.
Each tube is evaluated only inside its own bounding box. A scanner model may then blur the volume
(Gaussian point-spread function) before the noise is added; see ``nnunet_airway.phantoms.scanner``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from nnunet_airway.image_io import Geometry
from nnunet_airway.phantoms.anatomy import Chest
from nnunet_airway.phantoms.tree import Branch


@dataclass(frozen=True)
class Intensities:
    """Tissue intensities in HU for one phantom."""

    air: float = -1000.0  # outside the body
    lumen: float = -1000.0  # air inside the airways
    fat: float = -100.0
    muscle: float = 45.0
    bone: float = 450.0
    lung: float = -855.0
    lung_gravity: float = 60.0  # extra density at the back of the lungs (dependent atelectasis)
    lung_texture: float = 22.0  # standard deviation of the smooth parenchymal texture
    vessel: float = 40.0
    wall_large: float = 80.0  # wall of the trachea
    wall_small: float = -100.0  # wall of the smallest bronchioles, before partial volume
    noise: float = 30.0  # standard deviation of the (slightly correlated) image noise
    emphysema_share: float = 0.0  # share of the lungs' volume replaced by emphysematous patches
    emphysema: float = -970.0  # HU of those patches
    psf_fwhm_mm: float = 0.0  # scanner blur (Gaussian point-spread function, applied before noise); 0: none
    table: float | None = None  # HU of the patient table under the back; None: no table


class Grid:
    """Voxel-centre coordinates (mm) of a (Z, Y, X) grid with identity direction, shaped to broadcast."""

    def __init__(self, shape_zyx: tuple[int, int, int], geometry: Geometry) -> None:
        self.shape = tuple(int(n) for n in shape_zyx)
        self.spacing = np.asarray(geometry.spacing, float)  # (x, y, z)
        self.origin = np.asarray(geometry.origin, float)
        self.x = (self.origin[0] + self.spacing[0] * np.arange(self.shape[2])).astype(np.float32)
        self.y = (self.origin[1] + self.spacing[1] * np.arange(self.shape[1])).astype(np.float32)
        self.z = (self.origin[2] + self.spacing[2] * np.arange(self.shape[0])).astype(np.float32)
        self.voxel = float(np.prod(self.spacing) ** (1.0 / 3.0))  # size used for partial volume

    def box(self, low_xyz: np.ndarray, high_xyz: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) of the voxels whose centres lie in [low, high], or None when empty."""
        lo = np.maximum(np.ceil((low_xyz - self.origin) / self.spacing), 0).astype(int)
        hi = np.minimum(np.floor((high_xyz - self.origin) / self.spacing) + 1, self.shape[::-1]).astype(int)
        if np.any(hi <= lo):
            return None
        return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])

    def coords(self, box: tuple[slice, slice, slice]):
        """x, y, z coordinates of a box, shaped (1, 1, X), (1, Y, 1), (Z, 1, 1)."""
        zs, ys, xs = box
        return self.x[xs][None, None, :], self.y[ys][None, :, None], self.z[zs][:, None, None]


def inside_fraction(depth, voxel: float):
    """Share of a voxel inside a surface, from the signed depth (mm) of its centre."""
    return np.clip(0.5 + depth / voxel, 0.0, 1.0)


def tube_fraction(distance, radius: float, voxel: float):
    """Share of a voxel inside a tube of ``radius`` (mm) whose axis lies ``distance`` (mm) away.

    A linear ramp over one voxel around the surface, scaled down for tubes thinner than a voxel so
    their summed intensity stays about proportional to their cross-section.
    """
    half = 0.5 * voxel
    # below half a voxel: the ramp's cross-section pi (r + h)^3 / (6 h) scaled to the tube's pi r^2 (1 at r = h)
    peak = 1.0 if radius >= half else 8.0 * half * radius**2 / (radius + half) ** 3
    return np.clip((radius + half - distance) / voxel, 0.0, 1.0) * peak


def segment_distance(x, y, z, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (mm, float32) from points given as broadcastable coordinate arrays to segment a-b."""
    ab = (b - a).astype(np.float32)
    length2 = np.float32(max(float(ab @ ab), 1e-12))
    px, py, pz = x - np.float32(a[0]), y - np.float32(a[1]), z - np.float32(a[2])
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / length2, 0.0, 1.0)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    return np.sqrt(dx * dx + dy * dy + dz * dz)


def capsule_distances(grid: Grid, a: np.ndarray, b: np.ndarray, reach: float
                      ) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Distances (mm) from the voxel centres within ``reach`` of segment a-b's bounding box to the segment."""
    box = grid.box(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
    if box is None:
        return None
    return box, segment_distance(*grid.coords(box), a, b)


SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def lumen_is_connected(grid: Grid, branch: Branch, parent: Branch | None) -> bool:
    """Whether the voxels within ``branch.radius`` of its axis form one 6-connected piece that is joined
    (6-connected) to the parent's lumen voxels; for the trachea only the first part."""
    found = capsule_distances(grid, branch.start, branch.end, branch.radius + grid.voxel)
    if found is None:
        return False
    box, dist = found
    lumen = dist <= branch.radius
    if ndimage.label(lumen, SIX_CONNECTED)[1] != 1:
        return False
    if parent is None:
        return True
    parent_lumen = segment_distance(*grid.coords(box), parent.start, parent.end) <= parent.radius
    pieces, _ = ndimage.label(lumen | parent_lumen, SIX_CONNECTED)
    ids = np.unique(pieces[lumen])
    return ids.size == 1 and bool(np.any(pieces[parent_lumen] == ids[0]))


def _linear_upsampling(n_out: int, n_in: int, step: float) -> np.ndarray:
    """(n_out, n_in) weights that interpolate linearly at coarse positions 1 + i * step."""
    pos = 1.0 + step * np.arange(n_out)
    left = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    frac = (pos - left).astype(np.float32)
    weights = np.zeros((n_out, n_in), np.float32)
    weights[np.arange(n_out), left] = 1.0 - frac
    weights[np.arange(n_out), left + 1] = frac
    return weights


def _smooth_field(shape: tuple[int, int, int], spacing_zyx: np.ndarray, correlation_mm: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Smooth random field with unit standard deviation on a (Z, Y, X) box: coarse Gaussian noise with
    one sample every ``correlation_mm``, lightly blurred, interpolated linearly (separably) to the voxels."""
    steps = np.asarray(spacing_zyx, float) / correlation_mm
    coarse = tuple(int(np.ceil(n * st)) + 3 for n, st in zip(shape, steps, strict=True))
    field = ndimage.gaussian_filter(rng.standard_normal(coarse), 0.7, mode="wrap").astype(np.float32)
    field /= field.std() + 1e-12
    for axis, (n, c, st) in enumerate(zip(shape, coarse, steps, strict=True)):
        field = np.moveaxis(np.tensordot(_linear_upsampling(n, c, st), field, axes=(1, axis)), 0, axis)
    return np.ascontiguousarray(field)


def _correlated_noise(shape: tuple[int, int, int], sd: float, rng: np.random.Generator) -> np.ndarray:
    """Image noise blurred in-plane with a [1, 2, 1] / 4 kernel (CT noise is not white), rescaled to ``sd``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    noise = ndimage.correlate1d(noise, kernel, axis=1, mode="wrap")
    noise = ndimage.correlate1d(noise, kernel, axis=2, mode="wrap")
    return noise * np.float32(sd / 0.375)  # each pass scales the variance by 0.375


def _body(grid: Grid, chest: Chest, hu: Intensities) -> np.ndarray:
    """One axial (Y, X) slice of air, skin, fat, muscle and the vertebral body (the body is a cylinder)."""
    x, y = grid.x[None, :], grid.y[:, None]
    depth = chest.body_depth(x, y)
    fat_share = inside_fraction(chest.fat_thickness - depth, grid.voxel)
    tissue = hu.muscle * (1.0 - fat_share) + hu.fat * fat_share
    bone = inside_fraction(chest.spine_depth(x, y), grid.voxel)
    tissue = tissue * (1.0 - bone) + hu.bone * bone
    body = inside_fraction(depth, grid.voxel)
    return (hu.air * (1.0 - body) + tissue * body).astype(np.float32)


def _add_ribs(volume: np.ndarray, grid: Grid, chest: Chest, hu: Intensities) -> None:
    """Ribs: bony bands in the chest wall that fall from back to front, one every ``rib_period`` mm."""
    x, y = grid.x[None, :], grid.y[:, None]
    depth = chest.body_depth(x, y)
    inner = chest.fat_thickness + 3.0 * chest.scale
    thickness = 9.0 * chest.scale
    ring = inside_fraction(np.minimum(depth - inner, inner + thickness - depth), grid.voxel)
    # the bony ribs end at the front-lateral wall (cartilage and sternum are left out)
    ring = ring * inside_fraction(y - (chest.body_centre_xy[1] - 0.45 * chest.body_semi_axes[1]), grid.voxel)
    iy, ix = np.nonzero(ring > 0)
    if iy.size == 0:
        return
    z = grid.z[:, None]
    phase = (z - chest.rib_slope * (grid.y[iy][None, :] - chest.centre[1])) / chest.rib_period + chest.rib_phase
    from_rib_centre = np.abs(phase - np.floor(phase) - 0.5) * chest.rib_period  # mm along z
    lungs_z = [min(lung.dome_top_z - lung.dome_height for lung in chest.lungs),
               max(lung.centre[2] + lung.semi_axes[2] for lung in chest.lungs)]
    cage = inside_fraction(np.minimum(z - lungs_z[0], lungs_z[1] + 10.0 * chest.scale - z), grid.voxel)
    share = inside_fraction(6.0 * chest.scale - from_rib_centre, grid.voxel) * cage * ring[iy, ix]
    volume[:, iy, ix] = volume[:, iy, ix] * (1.0 - share) + hu.bone * share


def _add_table(volume: np.ndarray, grid: Grid, chest: Chest, table_hu: float) -> None:
    """The patient table: a slab 12 mm thick (scaled with the chest), 5 mm behind the back (+y), full width."""
    back = chest.body_centre_xy[1] + chest.body_semi_axes[1]
    top, thickness = back + 5.0 * chest.scale, 12.0 * chest.scale
    y = grid.y[:, None]
    share = inside_fraction(np.minimum(y - top, top + thickness - y), grid.voxel)  # (Y, 1)
    if np.any(share > 0):
        volume += ((np.float32(table_hu) - volume) * share[None]).astype(np.float32)


def _add_lungs(volume: np.ndarray, grid: Grid, chest: Chest, hu: Intensities, rng: np.random.Generator) -> None:
    """Aerated lung with smooth texture and a gravity gradient (denser at the back, +y)."""
    low = np.array([min(lu.centre[i] - lu.semi_axes[i] for lu in chest.lungs) for i in range(3)]) - grid.voxel
    high = np.array([max(lu.centre[i] + lu.semi_axes[i] for lu in chest.lungs) for i in range(3)]) + grid.voxel
    box = grid.box(low, high)
    if box is None:
        return
    x, y, z = grid.coords(box)
    share = inside_fraction(chest.lung_depth(x, y, z), grid.voxel).astype(np.float32)
    add_lung_tissue(volume, grid, box, share, chest, hu, rng)


def add_lung_tissue(volume: np.ndarray, grid: Grid, box: tuple[slice, slice, slice], share: np.ndarray, chest: Chest,
                    hu: Intensities, rng: np.random.Generator) -> None:
    """Blend lung parenchyma (texture, gravity gradient, emphysema) into ``volume[box]`` by ``share`` (0-1,
    float32, shaped like the box)."""
    _, y, _ = grid.coords(box)
    back = np.clip((y - (chest.centre[1] - 60.0 * chest.scale)) / (150.0 * chest.scale), 0.0, 1.0)
    texture = _smooth_field(share.shape, grid.spacing[::-1], 7.0 * chest.scale, rng) * np.float32(hu.lung_texture)
    lung = np.float32(hu.lung) + np.float32(hu.lung_gravity) * back ** 2 + texture
    if hu.emphysema_share > 0.0:
        # patches where a second smooth field exceeds its (1 - share) quantile, with soft edges
        field = _smooth_field(share.shape, grid.spacing[::-1], 12.0 * chest.scale, rng)
        threshold = np.float32(np.quantile(field[share > 0.5], 1.0 - hu.emphysema_share)) if np.any(share > 0.5) \
            else np.float32(np.inf)
        patch = np.clip((field - threshold) / np.float32(0.3) + 0.5, 0.0, 1.0)
        lung += (np.float32(hu.emphysema) - lung) * patch
    region = volume[box]
    volume[box] = region * (1.0 - share) + lung * share


def iter_tube_distances(grid: Grid, starts: np.ndarray, ends: np.ndarray, reaches: np.ndarray) -> Iterator:
    """(index, box, distances) for every segment that touches the grid."""
    for i in range(len(starts)):
        found = capsule_distances(grid, starts[i], ends[i], float(reaches[i]))
        if found is not None:
            yield i, found[0], found[1]


def _max_into(target: np.ndarray, box, values: np.ndarray) -> np.ndarray:
    """target[box] = max(target[box], values); returns where ``values`` won."""
    region = target[box]
    won = values > region
    region[won] = values[won]
    return won


def render(grid: Grid, chest: Chest, branches: list[Branch], vessels: tuple[np.ndarray, np.ndarray, np.ndarray],
           hu: Intensities, rng: np.random.Generator, largest_radius: float | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """CT (int16 HU) and airway label (uint8) on ``grid``; ``vessels`` = (starts, ends, radii) in mm.

    ``largest_radius`` (mm): the trachea's lumen radius, which wall intensities are graded against
    (default: the first branch's)."""
    volume = chest_wall(grid, chest, hu)
    _add_lungs(volume, grid, chest, hu, rng)

    voxel = grid.voxel
    vessel_share = np.zeros(grid.shape, np.float32)
    v_starts, v_ends, v_radii = vessels
    for i, box, dist in iter_tube_distances(grid, v_starts, v_ends, v_radii + voxel):
        _max_into(vessel_share, box, tube_fraction(dist, float(v_radii[i]), voxel))

    wall_share = np.zeros(grid.shape, np.float32)
    wall_hu = np.zeros(grid.shape, np.float32)
    lumen_share = np.zeros(grid.shape, np.float32)
    label = np.zeros(grid.shape, np.uint8)
    starts = np.array([b.start for b in branches])
    ends = np.array([b.end for b in branches])
    outer = np.array([b.outer_radius for b in branches])
    largest = branches[0].radius if largest_radius is None else float(largest_radius)
    for i, box, dist in iter_tube_distances(grid, starts, ends, outer + voxel):
        branch = branches[i]
        won = _max_into(wall_share, box, tube_fraction(dist, branch.outer_radius, voxel))
        wall_hu[box][won] = wall_intensity(branch.radius, largest, hu)
        _max_into(lumen_share, box, tube_fraction(dist, branch.radius, voxel))
        if branch.labelled:
            label[box][dist <= branch.radius] = 1

    volume += (hu.vessel - volume) * vessel_share
    volume += (wall_hu - volume) * wall_share
    volume += (hu.lumen - volume) * lumen_share
    return scanned(volume, grid, hu, rng), label


def chest_wall(grid: Grid, chest: Chest, hu: Intensities) -> np.ndarray:
    """The volume (float32 HU) before the lungs: air, body, spine, ribs and the table."""
    volume = np.empty(grid.shape, np.float32)
    volume[...] = _body(grid, chest, hu)[None]
    _add_ribs(volume, grid, chest, hu)
    if hu.table is not None:
        _add_table(volume, grid, chest, hu.table)
    return volume


def scanned(volume: np.ndarray, grid: Grid, hu: Intensities, rng: np.random.Generator) -> np.ndarray:
    """What the scanner makes of ``volume`` (float32 HU): blur by the point-spread function, correlated noise,
    int16 HU clipped to [-1024, 3071]."""
    if hu.psf_fwhm_mm > 0.0:
        sigma = hu.psf_fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / grid.spacing[::-1]
        volume = ndimage.gaussian_filter(volume, sigma, mode="nearest", truncate=3.0)
    volume += _correlated_noise(grid.shape, hu.noise, rng)
    return np.clip(np.rint(volume), -1024, 3071).astype(np.int16)


def wall_intensity(radius: float, largest_radius: float, hu: Intensities) -> float:
    """Wall HU before partial volume: from ``wall_large`` at the trachea down to ``wall_small``."""
    calibre = np.clip(radius / largest_radius, 0.0, 1.0) ** 0.6
    return float(hu.wall_small + (hu.wall_large - hu.wall_small) * calibre)
