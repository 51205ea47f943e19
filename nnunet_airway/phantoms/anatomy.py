"""The chest around the airway tree: body, fat, ribs, spine, heart and lungs as implicit shapes.

Every shape is a function of physical coordinates ``x, y, z`` in mm (ITK/LPS: +x patient left,
+y posterior, +z superior) that broadcast against each other, so one definition serves both the
voxel grid (1-D coordinate arrays shaped to broadcast over (Z, Y, X)) and point queries during tree
growth. ``*_depth`` functions return an approximate signed distance in mm: positive inside, negative
outside, exact on the surface and close to it nearby (first-order: implicit value / gradient norm).

Sizes are those of an adult chest (field of view about 350 x 350 x 300 mm); ``Chest.scale`` shrinks
every length uniformly when the field of view is smaller than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Field of view (x, y, z) in mm that an adult chest needs; used to derive spacing from shape.
ADULT_FOV_MM: tuple[float, float, float] = (350.0, 350.0, 300.0)


def _rho_over_grad(rho, grad, smallest_axis: float):
    """rho / |grad rho| (mm): bounded by the semi-axes; at the very centre (0 / 0) the smallest one."""
    tiny = 1e-9 / smallest_axis
    return np.where(grad > tiny, rho / np.maximum(grad, tiny), smallest_axis)


def ellipsoid_depth(dx, dy, dz, a: float, b: float, c: float):
    """Approximate signed distance (mm, positive inside) to an axis-aligned ellipsoid with semi-axes a, b, c."""
    qx, qy, qz = dx / a, dy / b, dz / c
    rho = np.sqrt(qx * qx + qy * qy + qz * qz)
    grad = np.sqrt((qx / a) ** 2 + (qy / b) ** 2 + (qz / c) ** 2)
    return (1.0 - rho) * _rho_over_grad(rho, grad, min(a, b, c))


def ellipse_depth(dx, dy, a: float, b: float):
    """Approximate signed distance (mm, positive inside) to an axis-aligned ellipse (a cylinder along z)."""
    qx, qy = dx / a, dy / b
    rho = np.sqrt(qx * qx + qy * qy)
    grad = np.sqrt((qx / a) ** 2 + (qy / b) ** 2)
    return (1.0 - rho) * _rho_over_grad(rho, grad, min(a, b))


@dataclass(frozen=True)
class Lung:
    """One lung: an ellipsoid cut from below by a diaphragm dome (mm, physical coordinates)."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    dome_top_z: float  # z of the diaphragm dome's apex
    dome_height: float  # how far the dome's rim lies below its apex

    def depth(self, x, y, z):
        cx, cy, cz = self.centre
        a, b, c = self.semi_axes
        dx, dy = x - cx, y - cy
        inside_ellipsoid = ellipsoid_depth(dx, dy, z - cz, a, b, c)
        # dome surface: z_d = top - height * r^2, r the normalised distance from the dome's axis
        r2 = (dx / a) ** 2 + (dy / b) ** 2
        above_dome = (z - (self.dome_top_z - self.dome_height * r2)) / np.sqrt(
            1.0 + (2.0 * self.dome_height) ** 2 * ((dx / a**2) ** 2 + (dy / b**2) ** 2)
        )
        return np.minimum(inside_ellipsoid, above_dome)


@dataclass(frozen=True)
class Chest:
    """An adult chest placed in a field of view (all lengths in mm, physical coordinates).

    ``centre`` is the centre of the field of view; ``scale`` (<= 1) the factor applied to every
    adult length so the chest fits the field of view.
    """

    centre: tuple[float, float, float]
    top_z: float  # z of the field of view's top slice: the trachea enters there
    scale: float
    body_semi_axes: tuple[float, float]
    body_centre_xy: tuple[float, float]
    fat_thickness: float
    lungs: tuple[Lung, Lung]  # right (x < centre), left
    heart_centre: tuple[float, float, float]
    heart_semi_axes: tuple[float, float, float]
    spine_centre_xy: tuple[float, float]
    spine_radius: float
    rib_period: float  # distance between ribs along z
    rib_slope: float  # dz/dy of the ribs (they fall from back to front)
    rib_phase: float
    trachea_top: tuple[float, float, float]
    carina: tuple[float, float, float]
    trachea_radius: float

    def body_depth(self, x, y):
        """Signed distance to the skin (the body is a cylinder along z)."""
        bx, by = self.body_centre_xy
        return ellipse_depth(x - bx, y - by, *self.body_semi_axes)

    def heart_depth(self, x, y, z):
        hx, hy, hz = self.heart_centre
        return ellipsoid_depth(x - hx, y - hy, z - hz, *self.heart_semi_axes)

    def spine_depth(self, x, y):
        sx, sy = self.spine_centre_xy
        return self.spine_radius - np.sqrt((x - sx) ** 2 + (y - sy) ** 2)

    def lung_depth(self, x, y, z):
        """Signed distance into the lungs: both lungs, minus heart and spine with a tissue gap."""
        gap = 6.0 * self.scale
        lungs = np.maximum(self.lungs[0].depth(x, y, z), self.lungs[1].depth(x, y, z))
        lungs = np.minimum(lungs, -self.heart_depth(x, y, z) - gap)
        lungs = np.minimum(lungs, -self.spine_depth(x, y) - gap)
        # keep lung tissue clear of the trachea above the carina (the mediastinum)
        tx, ty, _ = self.carina
        trachea_clearance = np.sqrt((x - tx) ** 2 + (y - ty) ** 2) - (self.trachea_radius * 1.6 + gap)
        above_carina = z > self.carina[2] - 2.0 * self.trachea_radius
        return np.where(above_carina, np.minimum(lungs, trachea_clearance), lungs)

    def point_lung_depth(self, points: np.ndarray) -> np.ndarray:
        """``lung_depth`` of points shaped (..., 3) in (x, y, z) mm."""
        return self.lung_depth(points[..., 0], points[..., 1], points[..., 2])


def make_chest(fov_min_xyz: np.ndarray, fov_max_xyz: np.ndarray, rng: np.random.Generator) -> Chest:
    """A randomly proportioned adult chest fitted into the field of view [fov_min, fov_max] (mm)."""
    extent = fov_max_xyz - fov_min_xyz
    scale = float(min(1.0, *(extent / np.asarray(ADULT_FOV_MM))))
    centre = (fov_min_xyz + fov_max_xyz) / 2.0
    cx, cy, cz = (float(v) for v in centre)
    top_z = float(fov_max_xyz[2])

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    width, depth = u(0.92, 1.03), u(0.92, 1.04)  # lateral and antero-posterior build
    s = scale
    # vertical layout relative to the field of view's centre (adult: -150 .. +150 mm)
    carina_z = cz + s * u(35.0, 55.0)
    body_semi = (s * 160.0 * width, s * 113.0 * depth)
    body_centre = (cx, cy + s * 6.0)
    lungs = (
        Lung(
            centre=(cx - s * 71.0 * width, cy + s * 6.0, cz - s * 2.0),
            semi_axes=(s * 58.0 * width, s * 80.0 * depth, s * 126.0),
            dome_top_z=cz - s * u(70.0, 85.0),
            dome_height=s * u(35.0, 50.0),
        ),
        Lung(
            centre=(cx + s * 73.0 * width, cy + s * 6.0, cz - s * 6.0),
            semi_axes=(s * 56.0 * width, s * 78.0 * depth, s * 122.0),
            dome_top_z=cz - s * u(85.0, 100.0),
            dome_height=s * u(30.0, 45.0),
        ),
    )
    return Chest(
        centre=(cx, cy, cz),
        top_z=top_z,
        scale=scale,
        body_semi_axes=body_semi,
        body_centre_xy=body_centre,
        fat_thickness=s * u(8.0, 20.0),
        lungs=lungs,
        heart_centre=(cx + s * u(18.0, 28.0) * width, cy - s * 38.0 * depth, cz - s * u(60.0, 75.0)),
        heart_semi_axes=(s * 62.0 * width, s * 52.0 * depth, s * 60.0),
        spine_centre_xy=(cx, cy + s * 84.0 * depth),
        spine_radius=s * 19.0,
        rib_period=s * u(24.0, 28.0),
        rib_slope=u(0.35, 0.5),
        rib_phase=u(0.0, 1.0),
        trachea_top=(cx + s * u(-3.0, 3.0), cy - s * u(10.0, 16.0), top_z),
        carina=(cx + s * u(-3.0, 3.0), cy - s * u(4.0, 10.0), carina_z),
        trachea_radius=s * u(7.6, 8.4),
    )
