"""Growing a dichotomous airway tree inside the chest's lungs (physical mm, (x, y, z)).

The trachea runs from the top of the field of view down to the carina; the two main bronchi leave it
in the coronal plane (the right one steeper and wider). From there every branch either ends or splits
into two children whose lumen radii are 0.70-0.80 of its own, which leave its axis at 25-45 degrees,
and whose branching plane is turned 60-120 degrees about the branch against the plane the branch
itself lies in. Among those rotations the one that keeps both children deepest inside the lungs and
farthest from the tree grown so far wins, so the tree spreads through the lungs; a split whose
children cannot stay inside the lungs or would touch another branch (walls plus a clearance) is not
made: the branch ends there. Growth is breadth-first, so the large airways claim their space first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .anatomy import Chest


@dataclass(frozen=True)
class TreeParameters:
    """How the tree is grown. Angles in degrees, lengths relative to the branch's lumen radius."""

    max_generation: int = 10  # trachea = 0
    major_ratio: tuple[float, float] = (0.76, 0.80)  # lumen radius of the wider child / parent
    minor_ratio: tuple[float, float] = (0.70, 0.74)
    major_angle: tuple[float, float] = (25.0, 34.0)  # the wider child deviates less (flow division)
    minor_angle: tuple[float, float] = (34.0, 45.0)
    length_per_radius: tuple[float, float] = (5.5, 9.0)  # branch length / lumen radius without territory
    min_length_per_radius: float = 3.5  # shortest branch tried when the full length does not fit
    max_length_per_radius: float = 14.0
    territory_points: int = 4096  # lung points shared out between branches to spread the tree
    plane_rotations: tuple[float, ...] = (60.0, 75.0, 90.0, 105.0, 120.0)
    wall_per_radius: float = 0.22  # wall thickness = wall_per_radius * r + wall_offset * chest scale
    wall_offset: float = 0.35


@dataclass
class Branch:
    """One airway segment from ``start`` to ``end`` (mm); its lumen is the capsule of radius ``radius``."""

    id: int
    parent: int | None
    generation: int
    start: np.ndarray
    end: np.ndarray
    radius: float
    wall: float
    plane_normal: np.ndarray  # unit normal of the plane holding this branch and its sibling
    branch_angle_deg: float | None = None  # angle between the parent's axis and this one
    plane_rotation_deg: float | None = None  # angle between the parent's plane and this branch's plane
    radius_ratio: float | None = None
    children: list[int] = field(default_factory=list)
    labelled: bool = False

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    @property
    def direction(self) -> np.ndarray:
        return (self.end - self.start) / self.length

    @property
    def outer_radius(self) -> float:
        return self.radius + self.wall


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (mm) from points (..., 1, 3) to segments a-b (M, 3), broadcast to (..., M)."""
    ab = b - a
    length2 = np.maximum((ab * ab).sum(axis=-1), 1e-12)
    rel = [points[..., i] - a[:, i] for i in range(3)]
    t = np.clip((rel[0] * ab[:, 0] + rel[1] * ab[:, 1] + rel[2] * ab[:, 2]) / length2, 0.0, 1.0)
    off = [rel[i] - t * ab[:, i] for i in range(3)]
    return np.sqrt(off[0] * off[0] + off[1] * off[1] + off[2] * off[2])


class _SegmentIndex:
    """The tree's segments so far, for clearance queries against bounding boxes."""

    def __init__(self, capacity: int) -> None:
        self.a = np.zeros((capacity, 3))
        self.b = np.zeros((capacity, 3))
        self.outer = np.zeros(capacity)
        self.low = np.zeros((capacity, 3))
        self.high = np.zeros((capacity, 3))
        self.n = 0

    def add(self, branch: Branch) -> None:
        i = self.n
        self.a[i], self.b[i], self.outer[i] = branch.start, branch.end, branch.outer_radius
        self.low[i] = np.minimum(branch.start, branch.end) - branch.outer_radius
        self.high[i] = np.maximum(branch.start, branch.end) + branch.outer_radius
        self.n += 1

    def slack(self, points: np.ndarray, outer: np.ndarray, exclude: int, reach: float) -> np.ndarray:
        """Smallest (distance - both outer radii) from points (K, C, S, 3) with outer radii (K, C) to
        the segments near them, over S and the segments; ``reach`` beyond which nothing matters."""
        n = self.n
        low = points.reshape(-1, 3).min(axis=0) - reach
        high = points.reshape(-1, 3).max(axis=0) + reach
        near = np.all((self.low[:n] <= high) & (self.high[:n] >= low), axis=1)
        near[exclude] = False
        idx = np.flatnonzero(near)
        if idx.size == 0:
            return np.full(points.shape[:2], reach)
        dist = point_segment_distance(points[..., None, :], self.a[idx], self.b[idx])  # (K, C, S, M)
        slack = dist - self.outer[idx] - outer[..., None, None]
        return np.minimum(slack.min(axis=(2, 3)), reach)


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """Rotate v (3,) perpendicular to unit ``axis`` by angles (K,) about it -> (K, 3)."""
    c, s = np.cos(angle_rad)[:, None], np.sin(angle_rad)[:, None]
    return v * c + np.cross(axis, v) * s


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(_unit(u), _unit(v)), -1.0, 1.0))))


def _plane_angle_deg(n1: np.ndarray, n2: np.ndarray) -> float:
    """Angle between two planes given by their normals, in [0, 90]."""
    return float(np.degrees(np.arccos(np.clip(abs(np.dot(_unit(n1), _unit(n2))), 0.0, 1.0))))


def wall_thickness(radius: float, scale: float, params: TreeParameters) -> float:
    return params.wall_per_radius * radius + params.wall_offset * scale


class _Grower:
    def __init__(self, chest: Chest, rng: np.random.Generator, clearance: float, params: TreeParameters) -> None:
        self.chest, self.rng, self.clearance, self.params = chest, rng, clearance, params
        self.branches: list[Branch] = []
        self.index = _SegmentIndex(2 ** (params.max_generation + 1) + 1)

    def add(self, parent: Branch | None, start, end, radius, normal, **angles) -> Branch:
        branch = Branch(
            id=len(self.branches), parent=None if parent is None else parent.id,
            generation=0 if parent is None else parent.generation + 1,
            start=np.asarray(start, float), end=np.asarray(end, float), radius=float(radius),
            wall=wall_thickness(radius, self.chest.scale, self.params), plane_normal=_unit(np.asarray(normal, float)),
            radius_ratio=None if parent is None else float(radius / parent.radius), **angles,
        )
        if parent is not None:
            parent.children.append(branch.id)
        self.branches.append(branch)
        self.index.add(branch)
        return branch

    def main_bronchi(self, trachea: Branch) -> list[Branch]:
        """Right (-x, steeper, wider) and left main bronchus, in a near-coronal plane through the carina."""
        u = self.rng.uniform
        d = trachea.direction
        lateral = _unit(np.cross(np.cross(d, [-1.0, 0.0, 0.0]), d))  # towards patient right, normal to d
        posterior = np.cross(d, lateral)
        tilt = np.radians(u(-12.0, 4.0))  # the bronchi run a little backwards
        lateral = lateral * np.cos(tilt) + posterior * np.sin(tilt)
        normal = _unit(np.cross(d, lateral))
        children = []
        for side, ratio, angle in (
            (1.0, u(0.78, 0.80), u(25.0, 32.0)),  # right main bronchus
            (-1.0, u(0.70, 0.73), u(38.0, 45.0)),  # left main bronchus
        ):
            radius = trachea.radius * ratio
            direction = np.cos(np.radians(angle)) * d + side * np.sin(np.radians(angle)) * lateral
            length = self._hilum_length(trachea.end, direction, radius)
            children.append(self.add(
                trachea, trachea.end, trachea.end + length * direction, radius, normal,
                branch_angle_deg=_angle_deg(d, direction), plane_rotation_deg=None,
            ))
        return children

    def _hilum_length(self, start: np.ndarray, direction: np.ndarray, radius: float) -> float:
        """Length that takes a main bronchus from the carina well into its lung (the hilum)."""
        steps = np.arange(1.0, 121.0) * self.chest.scale
        depth = self.chest.point_lung_depth(start + steps[:, None] * direction)
        inside = np.flatnonzero(depth >= 1.5 * radius)
        reach = steps[inside[0]] if inside.size else steps[-1]
        return float(max(reach + self.rng.uniform(0.0, 6.0) * self.chest.scale, 3.5 * radius))

    def split(self, branch: Branch, territory: np.ndarray) -> list[tuple[Branch, np.ndarray]]:
        """Try to give ``branch`` two children; returns them with their territories, or [] where none fit.

        ``territory`` (M, 3): the lung points this branch supplies. Each candidate branching plane cuts it
        in two; each child heads for the centroid of its half (its angle clamped to the allowed range)
        and reaches 40-50% of the way there, the child with the larger half being the wider one.
        """
        p, u = self.params, self.rng.uniform
        ratios = np.array([u(*p.major_ratio), u(*p.minor_ratio)])
        default_angles = np.radians([u(*p.major_angle), u(*p.minor_angle)])
        default_lengths = np.array([u(*p.length_per_radius), u(*p.length_per_radius)])
        reach_share = u(0.4, 0.5)
        rotations = np.radians(np.array(p.plane_rotations) + u(-7.0, 7.0, len(p.plane_rotations)))
        rotations = np.concatenate([rotations, rotations + np.pi])  # which child goes to which side
        d = branch.direction
        normals = _rotate_about(branch.plane_normal, d, rotations)  # (K, 3)
        sides = np.stack([np.cross(normals, d), -np.cross(normals, d)], axis=1)  # (K, 2, 3) in-plane, per child

        rel = territory - branch.end  # (M, 3)
        on_plus = (rel @ sides[:, 0].T) > 0.0  # (M, K)
        members = np.stack([on_plus, ~on_plus], axis=2)  # (M, K, 2)
        counts = members.sum(axis=0).astype(float)  # (K, 2)
        centroids = np.einsum("mkc,mi->kci", members, rel) / np.maximum(counts, 1.0)[..., None]  # (K, 2, 3)
        along = centroids @ d  # (K, 2)
        across = np.einsum("kci,kci->kc", centroids, sides)
        has_points = counts > 0
        lo, hi = np.radians(p.major_angle[0]), np.radians(p.minor_angle[1])
        angles = np.where(has_points, np.clip(np.arctan2(across, along), lo, hi), default_angles[None, :])
        wider = counts[:, 0] >= counts[:, 1]  # (K,) child 0 is the wider one
        radius = branch.radius * np.where(wider[:, None], ratios[None, :], ratios[None, ::-1])  # (K, 2)
        distance = np.linalg.norm(centroids, axis=2)
        lengths = np.where(has_points, reach_share * distance, default_lengths[None, :] * radius)
        lengths = np.clip(lengths, p.min_length_per_radius * radius, p.max_length_per_radius * radius)
        directions = np.cos(angles)[..., None] * d + np.sin(angles)[..., None] * sides  # (K, 2, 3)
        outer = radius + np.vectorize(lambda r: wall_thickness(r, self.chest.scale, p))(radius)

        aim = np.where(has_points, np.einsum("kci,kci->kc", directions, centroids) / np.maximum(distance, 1e-9), 0.0)
        share = counts / max(len(territory), 1)
        preference = (share * aim).sum(axis=1) - 0.5 * np.abs(share[:, 0] - share[:, 1])
        for shrink in (1.0, 0.8, 0.62):
            child_lengths = np.maximum(lengths * shrink, p.min_length_per_radius * radius)
            best = self._best_rotation(branch, directions, child_lengths, outer, preference)
            if best is not None:
                break
        else:
            return []
        children = []
        for c in range(2):
            child = self.add(branch, branch.end, branch.end + child_lengths[best, c] * directions[best, c],
                             radius[best, c], normals[best], branch_angle_deg=_angle_deg(d, directions[best, c]),
                             plane_rotation_deg=_plane_angle_deg(branch.plane_normal, normals[best]))
            children.append((child, territory[members[:, best, c]]))
        return children

    def _best_rotation(self, branch: Branch, directions: np.ndarray, lengths: np.ndarray, outer: np.ndarray,
                       preference: np.ndarray) -> int | None:
        """Index of the feasible candidate (K) with the best preference and room, or None.

        ``directions`` (K, 2, 3), ``lengths`` and ``outer`` radii (K, 2) of the two children per candidate.
        """
        step = max(float(outer.min()), 0.5 * self.chest.scale) + 0.5 * self.clearance
        samples = int(np.clip(np.ceil(lengths.max() / step) + 1, 3, 16))
        # skip the part of each child that still lies inside its parent's outer tube
        t0 = np.minimum(0.5, (branch.outer_radius + outer) / lengths)  # (K, 2)
        t = t0[..., None] + (1.0 - t0[..., None]) * np.linspace(0.0, 1.0, samples)  # (K, 2, S)
        points = branch.end + (lengths[..., None] * t)[..., None] * directions[:, :, None, :]  # (K, 2, S, 3)
        depth_slack = self.chest.point_lung_depth(points).min(axis=2) - outer  # (K, 2)
        inside = np.flatnonzero(np.all(depth_slack >= 0.0, axis=1))
        if inside.size == 0:
            return None
        reach = 20.0 * self.chest.scale + self.clearance
        gap_slack = self.index.slack(points[inside], outer[inside], branch.id, reach) - self.clearance
        feasible = np.all(gap_slack >= 0.0, axis=1)
        if not feasible.any():
            return None
        room = np.minimum(np.minimum(depth_slack[inside], gap_slack).min(axis=1), reach) / reach  # 0..1
        score = preference[inside] + 0.3 * room + self.rng.uniform(0.0, 0.05, room.shape)
        return int(inside[np.argmax(np.where(feasible, score, -np.inf))])


def sample_lung_points(chest: Chest, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points (mm) spread uniformly through the lungs (rejection sampling in their bounding box)."""
    low = np.array([min(lu.centre[i] - lu.semi_axes[i] for lu in chest.lungs) for i in range(3)])
    high = np.array([max(lu.centre[i] + lu.semi_axes[i] for lu in chest.lungs) for i in range(3)])
    found: list[np.ndarray] = []
    total = 0
    for _ in range(50):
        candidates = rng.uniform(low, high, (4 * n, 3))
        kept = candidates[chest.point_lung_depth(candidates) > 2.0 * chest.scale]
        found.append(kept)
        total += len(kept)
        if total >= n:
            break
    return np.concatenate(found)[:n]


def grow_airway_tree(chest: Chest, rng: np.random.Generator, clearance: float,
                     params: TreeParameters | None = None) -> list[Branch]:
    """Grow the tree; ``clearance`` (mm) is the least gap between the outer walls of non-adjacent branches."""
    params = params or TreeParameters()
    grower = _Grower(chest, rng, clearance, params)
    trachea = grower.add(None, chest.trachea_top, chest.carina, chest.trachea_radius, [0.0, 1.0, 0.0])
    points = sample_lung_points(chest, rng, params.territory_points)
    right = points[:, 0] < chest.carina[0]
    queue = list(zip(grower.main_bronchi(trachea), (points[right], points[~right]), strict=True))
    head = 0
    while head < len(queue):
        branch, territory = queue[head]
        head += 1
        if branch.generation < params.max_generation:
            queue.extend(grower.split(branch, territory))
    return grower.branches


def mark_labelled(branches: list[Branch], min_radius: float, min_length: float,
                  drawn_connected: Callable[[Branch, Branch | None], bool] = lambda branch, parent: True) -> None:
    """Decide which branches the label shows (sets ``Branch.labelled``).

    The trachea, then sibling pairs whose parent is labelled and where both siblings have a lumen radius
    >= ``min_radius``, a length >= ``min_length``, >= 3 radii and >= the parent's radius + ``min_length`` / 2
    (so each reads as a branch of its own in a skeleton), and ``drawn_connected(branch, parent)`` (their
    voxelised lumen is one connected piece joined to the parent's). Siblings go together: a parent with a
    single labelled child would merge with it into one branch.
    """
    for branch in branches:  # parents come before children
        if branch.parent is None:
            branch.labelled = branch.radius >= min_radius and drawn_connected(branch, None)
            continue
        parent = branches[branch.parent]
        if branch.id != parent.children[0]:
            continue  # decided with its sibling
        pair = [branches[i] for i in parent.children]
        ok = parent.labelled and len(pair) == 2 and all(
            b.radius >= min_radius and b.length >= max(min_length, 3.0 * b.radius, parent.radius + min_length / 2)
            for b in pair
        ) and all(drawn_connected(b, parent) for b in pair)
        for b in pair:
            b.labelled = ok
