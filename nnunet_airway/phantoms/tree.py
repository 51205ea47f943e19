"""Growing a dichotomous airway tree inside the chest's lungs (physical mm, (x, y, z)).

The trachea runs from the top of the field of view down to the carina; the two main bronchi leave it
in one plane (the right one steeper and wider), aimed at the deepest lung they can reach. From there
every branch either ends or splits into two children whose lumen radii are 0.62-0.76 of its own down to
generation 4 and 0.76-0.88 past it (``TreeParameters``); each child turns part of the way towards the
centroid of its half of the branch's territory, the wider child by 12-35 degrees, the narrower by
18-50, and their branching plane is turned 60-120 degrees about the branch against the plane the branch
itself lies in (40-50 degrees where nothing else fits). Sample points of the lungs are shared out
between the branches (each branch's territory); each candidate plane cuts the territory in two, so the
tree spreads through the lungs. A split whose children cannot stay inside
the lungs or would come closer than a clearance to another branch's wall is not made: the branch ends
there. Growth is breadth-first, so the large airways claim their space first. Children thick enough
for the label are first tried at the length a skeleton needs to read them as branches (``LabelRule``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from nnunet_airway.phantoms.anatomy import Chest


@dataclass(frozen=True)
class TreeParameters:
    """How the tree is grown. Angles in degrees, lengths relative to the branch's lumen radius.

    Lumen radius ratios (child / parent) fall fast over the central airways and slowly past them, as in
    Weibel's morphometry (Weibel 1963, *Morphometry of the Human Lung*: diameter ratios near 0.68 over
    generations 1-3, 0.8-0.85 deeper): ``major_ratio``/``minor_ratio`` for children up to generation
    ``central_generations``, ``deep_major_ratio``/``deep_minor_ratio`` past it.
    """

    max_generation: int = 10  # trachea = 0
    main_bronchus_ratio: tuple[tuple[float, float], tuple[float, float]] = ((0.64, 0.70), (0.56, 0.62))  # right, left
    main_bronchus_angle: tuple[tuple[float, float], tuple[float, float]] = ((25.0, 32.0), (38.0, 45.0))
    central_generations: int = 4  # children of this generation and above use the central ratios
    major_ratio: tuple[float, float] = (0.70, 0.76)  # lumen radius of the wider child / parent
    minor_ratio: tuple[float, float] = (0.62, 0.68)
    deep_major_ratio: tuple[float, float] = (0.82, 0.88)
    deep_minor_ratio: tuple[float, float] = (0.76, 0.82)
    major_angle: tuple[float, float] = (12.0, 35.0)  # the wider child deviates less (flow division)
    minor_angle: tuple[float, float] = (18.0, 50.0)
    # a child turns this share of the angle towards the centroid of its half of the territory (raised to the range's
    # low end; past its high end the angle drawn within the range is taken instead)
    angle_share: tuple[float, float] = (0.5, 0.8)
    length_per_radius: tuple[float, float] = (5.5, 9.0)  # branch length / lumen radius without territory
    min_length_per_radius: float = 3.5  # shortest branch tried when the full length does not fit
    max_length_per_radius: float = 14.0
    territory_points: int = 4096  # lung points shared out between branches to spread the tree
    reach_share: tuple[float, float] = (0.4, 0.5)  # share of the way to its territory's centroid a child goes
    thin_clearance_share: float = 0.3  # clearance for children thinner than half a clearance, relative to it
    plane_rotations: tuple[float, ...] = (60.0, 75.0, 90.0, 105.0, 120.0)  # +- 7 degrees of jitter
    fallback_plane_rotations: tuple[float, ...] = (40.0, 50.0, 130.0, 140.0)  # +- 5; when nothing else fits
    wall_per_radius: float = 0.22  # wall thickness = wall_per_radius * r + wall_offset * chest scale
    wall_offset: float = 0.35

    def child_ratios(self, child_generation: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """(wider, narrower) child's radius-ratio range for children of ``child_generation``."""
        if child_generation <= self.central_generations:
            return self.major_ratio, self.minor_ratio
        return self.deep_major_ratio, self.deep_minor_ratio


@dataclass(frozen=True)
class LabelRule:
    """When a branch can be shown in the label of a grid, so that a skeleton reads it as a branch.

    A labelled branch needs a lumen radius >= ``min_radius`` (mm), at least 3 radii of length, and must
    reach ``min_steps`` voxel steps of a 26-connected centreline beyond the point where its lumen parts
    from its parent's and its sibling's (tree parsers drop shorter skeleton pieces, and thinning shortens
    thin arms by a few voxels).
    """

    spacing_xyz: tuple[float, float, float]
    min_radius: float
    min_steps: float = 8.0

    def steps_per_mm(self, directions: np.ndarray) -> np.ndarray:
        """Voxel steps per mm of a digital line along unit ``directions`` (..., 3)."""
        return np.max(np.abs(directions) / np.asarray(self.spacing_xyz), axis=-1)

    def min_length(self, radii, directions, parent_radius) -> np.ndarray:
        """Least lengths (mm) of two sibling branches (radii (..., 2), unit directions (..., 2, 3)) leaving
        a parent of ``parent_radius`` for both to be labelled."""
        radii, directions = np.asarray(radii, float), np.asarray(directions, float)
        cos = np.clip(np.sum(directions[..., 0, :] * directions[..., 1, :], axis=-1), -1.0, 1.0)
        half_angle = np.arccos(cos) / 2.0
        # distance from the branching point at which the siblings' lumens lie a voxel apart
        parting = (radii.sum(axis=-1) + max(self.spacing_xyz)) / (2.0 * np.maximum(np.sin(half_angle), 1e-3))
        junction = np.maximum(parent_radius, parting)[..., None]
        return np.maximum(junction + radii + self.min_steps / self.steps_per_mm(directions), 3.0 * radii)

    def admits_trachea(self, trachea: Branch) -> bool:
        steps = trachea.length * float(self.steps_per_mm(trachea.direction))
        return trachea.radius >= self.min_radius and steps >= self.min_steps

    def admits_pair(self, pair: list[Branch], parent: Branch) -> bool:
        lengths = self.min_length([b.radius for b in pair], np.array([b.direction for b in pair]), parent.radius)
        return all(b.radius >= self.min_radius and b.length >= need - 1e-6 and not b.crowded
                   for b, need in zip(pair, lengths, strict=True))


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
    crowded: bool = False  # placed with the relaxed clearance: may lie within a voxel of another branch

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
    def __init__(self, chest: Chest, rng: np.random.Generator, clearance: float, rule: LabelRule,
                 params: TreeParameters) -> None:
        self.chest, self.rng, self.clearance, self.rule, self.params = chest, rng, clearance, rule, params
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
        """Right (-x, steeper, wider) and left main bronchus, in one plane through the trachea's axis.

        The plane's backward tilt and each bronchus' angle are chosen, within their ranges, to reach
        deepest into the lungs (their hila), so the lobar bronchi have room to fan out.
        """
        u = self.rng.uniform
        d = trachea.direction
        lateral = _unit(np.cross(np.cross(d, [-1.0, 0.0, 0.0]), d))  # towards patient right, normal to d
        posterior = np.cross(d, lateral)
        (right_ratio, left_ratio), (right_angle, left_angle) = self.params.main_bronchus_ratio, self.params.main_bronchus_angle
        radii = trachea.radius * np.array([u(*right_ratio), u(*left_ratio)])
        angle_choices = np.radians([np.linspace(*right_angle, 4), np.linspace(*left_angle, 4)])  # (2, A)
        tilts = np.radians(np.linspace(-20.0, 5.0, 6) + u(-2.0, 2.0))  # (T,) the bronchi run a little backwards
        steps = np.arange(1.0, 101.0) * self.chest.scale  # (S,) candidate lengths, mm
        side = np.array([1.0, -1.0])[:, None, None]
        best = (-np.inf, None)
        for tilt in tilts:
            in_plane = lateral * np.cos(tilt) + posterior * np.sin(tilt)
            dirs = np.cos(angle_choices)[..., None] * d + side * np.sin(angle_choices)[..., None] * in_plane  # (2, A, 3)
            # the least length the label needs, with the sibling at the middle of its range
            pairs = np.stack([dirs[0], np.repeat(dirs[1, 1:2], len(dirs[0]), axis=0)], axis=1)  # (A, 2, 3)
            floor_right = self.rule.min_length(radii, pairs, trachea.radius)[:, 0]
            pairs = np.stack([np.repeat(dirs[0, 1:2], len(dirs[1]), axis=0), dirs[1]], axis=1)
            floor_left = self.rule.min_length(radii, pairs, trachea.radius)[:, 1]
            floors = np.stack([floor_right, floor_left])  # (2, A)
            depth = self.chest.point_lung_depth(trachea.end + steps[:, None, None, None] * dirs)  # (S, 2, A)
            usable = np.where(steps[:, None, None] >= floors[None], depth, -np.inf)
            # end at the first point 1.5 radii deep (the rest of the lung is left to the lobar bronchi),
            # else at the deepest
            deep = usable >= 1.5 * radii[None, :, None]
            first_deep = np.where(deep.any(axis=0), deep.argmax(axis=0), usable.argmax(axis=0))  # (2, A)
            end_depth = np.take_along_axis(usable, first_deep[None], axis=0)[0]
            score = np.minimum(end_depth, 3.0 * radii[:, None]) + u(0.0, 1.0, end_depth.shape) * self.chest.scale
            pick = score.argmax(axis=1)
            total = score[[0, 1], pick].min()
            if total > best[0]:
                best = (total, (in_plane, dirs[[0, 1], pick], steps[first_deep[[0, 1], pick]]))
        in_plane, directions, lengths = best[1]
        normal = _unit(np.cross(d, in_plane))
        lengths = np.maximum(lengths, self.rule.min_length(radii, directions, trachea.radius))
        return [
            self.add(trachea, trachea.end, trachea.end + length * direction, radius, normal,
                     branch_angle_deg=_angle_deg(d, direction), plane_rotation_deg=None)
            for radius, direction, length in zip(radii, directions, lengths, strict=True)
        ]

    def split(self, branch: Branch, territory: np.ndarray) -> list[tuple[Branch, np.ndarray]]:
        """Try to give ``branch`` two children; returns them with their territories, or [] where none fit.

        ``territory`` (M, 3): the lung points this branch supplies. Each candidate branching plane cuts it
        in two; each child heads for the centroid of its half (its angle clamped to the allowed range)
        and reaches part of the way there, the child with the larger half being the wider one. The
        fallback plane rotations (still turning the plane) and shorter children are tried only when
        nothing else fits.
        """
        p, u = self.params, self.rng.uniform
        wider_ratio, narrower_ratio = p.child_ratios(branch.generation + 1)
        draws = _SplitDraws(
            ratios=np.array([u(*wider_ratio), u(*narrower_ratio)]),
            angles=np.radians([u(*p.major_angle), u(*p.minor_angle)]),
            length_per_radius=np.array([u(*p.length_per_radius), u(*p.length_per_radius)]),
            reach_share=u(*p.reach_share),
            angle_share=u(*p.angle_share),
        )
        rotation_sets = [np.array(p.plane_rotations) + u(-7.0, 7.0, len(p.plane_rotations)),
                         np.array(p.fallback_plane_rotations) + u(-5.0, 5.0, len(p.fallback_plane_rotations))]
        for rotations in rotation_sets:
            c = self._candidates(branch, territory, np.radians(rotations), draws)
            floor_for_label = np.maximum(c.shortest, p.min_length_per_radius * c.radius)
            # last resort: children too short for the label (it will stop above them), but anatomy goes on
            floor = p.min_length_per_radius * c.radius
            # children long enough for the label are only made where they still end with room for
            # their own children (1.5 outer radii deep in the lung); otherwise the tree would stop there
            room = 1.0 if branch.generation <= 1 else 1.5  # the lobar bronchi get their label length first
            for shrink, shortest, end_depth, relaxed in ((1.0, floor_for_label, room, False),
                                                         (0.8, floor_for_label, room, False),
                                                         (0.62, floor_for_label, room, False),
                                                         (0.8, floor, 1.0, False), (0.62, floor, 1.0, False),
                                                         (0.62, floor, 1.0, True), (0.0, 2.5 * c.radius, 0.5, True)):
                lengths = np.maximum(c.lengths * shrink, shortest)
                best = self._best_rotation(branch, c.directions, lengths, c.outer, c.preference, relaxed,
                                           end_depth * c.outer)
                if best is not None:
                    return [
                        (self.add(branch, branch.end, branch.end + lengths[best, k] * c.directions[best, k],
                                  c.radius[best, k], c.normals[best],
                                  branch_angle_deg=_angle_deg(branch.direction, c.directions[best, k]),
                                  plane_rotation_deg=_plane_angle_deg(branch.plane_normal, c.normals[best]),
                                  crowded=relaxed),
                         territory[c.members[:, best, k]])
                        for k in range(2)
                    ]
        return []

    def _candidates(self, branch: Branch, territory: np.ndarray, rotations: np.ndarray,
                    draws: _SplitDraws) -> _Candidates:
        """Children for each plane rotation (K) and each assignment of the wider child to a side."""
        p = self.params
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
        wider = counts[:, 0] >= counts[:, 1]  # (K,) child 0 is the wider one
        is_wider = np.stack([wider, ~wider], axis=1)  # (K, 2)
        # the wider child leaves at the smaller angle (flow division), the narrower at the larger
        lo = np.radians(np.where(is_wider, p.major_angle[0], p.minor_angle[0]))
        hi = np.radians(np.where(is_wider, p.major_angle[1], p.minor_angle[1]))
        default = np.where(is_wider, draws.angles[0], draws.angles[1])
        # a child turns part of the way towards its half's centroid; where that would turn it past its range (the
        # half lies far to the side or behind, as around deep branches), it takes the angle drawn within the range
        towards = draws.angle_share * np.arctan2(across, along)
        angles = np.where(has_points & (towards <= hi), np.maximum(towards, lo), default)
        radius = branch.radius * np.where(wider[:, None], draws.ratios[None, :], draws.ratios[None, ::-1])
        distance = np.linalg.norm(centroids, axis=2)
        lengths = np.where(has_points, draws.reach_share * distance, draws.length_per_radius[None, :] * radius)
        directions = np.cos(angles)[..., None] * d + np.sin(angles)[..., None] * sides  # (K, 2, 3)
        # children the label could show are made long enough to read as branches of their own
        shortest = np.where(radius >= self.rule.min_radius, self.rule.min_length(radius, directions, branch.radius),
                            p.min_length_per_radius * radius)
        lengths = np.clip(lengths, p.min_length_per_radius * radius, p.max_length_per_radius * radius)
        outer = radius + p.wall_per_radius * radius + p.wall_offset * self.chest.scale
        aim = np.where(has_points, np.einsum("kci,kci->kc", directions, centroids) / np.maximum(distance, 1e-9), 0.0)
        share = counts / max(len(territory), 1)
        preference = (share * aim).sum(axis=1) - 0.5 * np.abs(share[:, 0] - share[:, 1])
        return _Candidates(normals, directions, lengths, shortest, radius, outer, preference, members)

    def _best_rotation(self, branch: Branch, directions: np.ndarray, lengths: np.ndarray, outer: np.ndarray,
                       preference: np.ndarray, relaxed: bool = False, end_depth: np.ndarray | None = None,
                       ) -> int | None:
        """Index of the feasible candidate (K) with the best preference and room, or None.

        ``directions`` (K, 2, 3), ``lengths`` and ``outer`` radii (K, 2) of the two children per candidate.
        Room: how deep in the lung each child ends, relative to what its own children will need. ``relaxed``
        lowers the clearance of every child to that of sub-resolution ones; ``end_depth`` (K, 2): how deep in
        the lung each child must end (default: its outer radius).
        """
        step = max(float(outer.min()), 0.5 * self.chest.scale) + 0.5 * self.clearance
        samples = int(np.clip(np.ceil(lengths.max() / step) + 1, 3, 16))
        # skip the part of each child that still lies inside its parent's outer tube
        t0 = np.minimum(0.5, (branch.outer_radius + outer) / lengths)  # (K, 2)
        t = t0[..., None] + (1.0 - t0[..., None]) * np.linspace(0.0, 1.0, samples)  # (K, 2, S)
        points = branch.end + (lengths[..., None] * t)[..., None] * directions[:, :, None, :]  # (K, 2, S, 3)
        depth = self.chest.point_lung_depth(points)  # (K, 2, S)
        end_depth = outer if end_depth is None else end_depth
        # the whole tube inside the lung; only for the relaxed last resort short stubs that keep their axis inside
        inside_margin = 0.5 * outer if relaxed and np.all(end_depth < outer) else outer
        inside = np.flatnonzero(np.all(depth.min(axis=2) >= inside_margin, axis=1)
                                & np.all(depth[..., -1] >= end_depth, axis=1))
        if inside.size == 0:
            return None
        reach = 20.0 * self.chest.scale + self.clearance
        # sub-resolution children only need to stay apart physically, not by a voxel
        # (``relaxed``: a last resort for any child; they still do not touch)
        thin = (outer[inside] < 0.5 * self.clearance) | relaxed
        clearance = np.where(thin, self.params.thin_clearance_share, 1.0) * self.clearance
        gap_slack = self.index.slack(points[inside], outer[inside], branch.id, reach) - clearance
        feasible = np.all(gap_slack >= 0.0, axis=1)
        if not feasible.any():
            return None
        end_room = np.clip((depth[inside, :, -1] - outer[inside]) / (4.0 * outer[inside]), 0.0, 1.0).min(axis=1)
        gap_room = np.clip(gap_slack / reach, 0.0, 1.0).min(axis=1)
        score = preference[inside] + 0.5 * end_room + 0.2 * gap_room + self.rng.uniform(0.0, 0.05, inside.size)
        return int(inside[np.argmax(np.where(feasible, score, -np.inf))])


class _SplitDraws(NamedTuple):
    ratios: np.ndarray  # (2,) wider and narrower child's radius / parent's
    angles: np.ndarray  # (2,) rad, where a child's half of the territory is empty or too far to the side
    length_per_radius: np.ndarray  # (2,) likewise
    reach_share: float
    angle_share: float


class _Candidates(NamedTuple):
    normals: np.ndarray  # (K, 3)
    directions: np.ndarray  # (K, 2, 3)
    lengths: np.ndarray  # (K, 2)
    shortest: np.ndarray  # (K, 2) the least length each child may be shrunk to
    radius: np.ndarray  # (K, 2)
    outer: np.ndarray  # (K, 2)
    preference: np.ndarray  # (K,)
    members: np.ndarray  # (M, K, 2) territory points per child


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


def grow_airway_tree(chest: Chest, rng: np.random.Generator, clearance: float, rule: LabelRule,
                     params: TreeParameters | None = None) -> list[Branch]:
    """Grow the tree; ``clearance`` (mm) is the least gap between the outer walls of non-adjacent branches;
    branches thick enough for the label under ``rule`` are grown long enough for it."""
    params = params or TreeParameters()
    grower = _Grower(chest, rng, clearance, rule, params)
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


def mark_labelled(branches: list[Branch], rule: LabelRule,
                  drawn_connected: Callable[[Branch, Branch | None], bool] = lambda branch, parent: True) -> None:
    """Decide which branches the label shows (sets ``Branch.labelled``).

    The trachea, then sibling pairs whose parent is labelled and which both pass ``rule`` and
    ``drawn_connected(branch, parent)`` (their voxelised lumen is one connected piece joined to the
    parent's). Siblings go together: a parent with a single labelled child would merge with it into one
    branch.
    """
    for branch in branches:  # parents come before children
        if branch.parent is None:
            branch.labelled = rule.admits_trachea(branch) and drawn_connected(branch, None)
            continue
        parent = branches[branch.parent]
        if branch.id != parent.children[0]:
            continue  # decided with its sibling
        pair = [branches[i] for i in parent.children]
        ok = (parent.labelled and len(pair) == 2 and rule.admits_pair(pair, parent)
              and all(drawn_connected(b, parent) for b in pair))
        for b in pair:
            b.labelled = ok
