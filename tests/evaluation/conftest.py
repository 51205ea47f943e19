"""Hand-built airway trees for the evaluator tests: tubes (capsules) drawn in millimetres on a voxel grid."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

Segment = tuple[Sequence[float], Sequence[float], float]  # (start_mm, end_mm, radius_mm), points (z, y, x)


def draw_tubes(shape: tuple[int, int, int], segments: Sequence[Segment],
               spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """uint8 (Z, Y, X) volume with 1 inside every capsule (a segment swept by a ball); points in mm."""
    volume = np.zeros(shape, dtype=np.uint8)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    for start, end, radius in segments:
        p0, p1 = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
        lo = np.maximum(np.floor((np.minimum(p0, p1) - radius) / spacing).astype(int) - 1, 0)
        hi = np.minimum(np.ceil((np.maximum(p0, p1) + radius) / spacing).astype(int) + 2, shape)
        if np.any(hi <= lo):
            continue
        grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), axis=-1) * spacing
        direction = p1 - p0
        t = np.clip(((grid - p0) @ direction) / max(float(direction @ direction), 1e-12), 0.0, 1.0)
        distance = np.linalg.norm(grid - (p0 + t[..., None] * direction), axis=-1)
        volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] |= (distance <= radius).astype(np.uint8)
    return volume


def fit_tubes(segments: Sequence[Segment], spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
              margin_mm: float = 4.0) -> np.ndarray:
    """Draw ``segments`` on the smallest grid holding them plus ``margin_mm`` (segments shifted to fit)."""
    ends = np.array([p for start, end, _ in segments for p in (start, end)], dtype=np.float64)
    reach = max(r for _, _, r in segments) + margin_mm
    low = ends.min(axis=0) - reach
    shape = tuple(int(n) for n in np.ceil((ends.max(axis=0) + reach - low) / np.asarray(spacing_zyx)) + 1)
    shifted = [(np.subtract(s, low), np.subtract(e, low), r) for s, e, r in segments]
    return draw_tubes(shape, shifted, spacing_zyx)  # type: ignore[arg-type]


Y_SEGMENTS: list[Segment] = [((3, 12, 24), (20, 12, 24), 4.0), ((20, 12, 24), (40, 12, 8), 3.0),
                             ((20, 12, 24), (40, 12, 40), 3.0)]


def rotating_tree_segments(root: Sequence[float], length: float, radius: float, generations: int,
                           spread_deg: float = 35.0) -> list[Segment]:
    """A 3-D binary tree growing towards +z whose bifurcation planes turn by 90 degrees at every
    generation, as in lungs (2**(generations + 1) - 1 branches; lengths and radii shrink by 0.8)."""
    segments: list[Segment] = []

    def grow(start: np.ndarray, direction: np.ndarray, normal: np.ndarray, level: int, seg_length: float,
             seg_radius: float) -> None:
        end = start + seg_length * direction
        segments.append((tuple(start), tuple(end), seg_radius))
        if level < generations:
            side_axis = np.cross(direction, normal)
            side_axis /= np.linalg.norm(side_axis)
            for side in (-1, 1):
                child = np.cos(np.radians(spread_deg)) * direction + side * np.sin(np.radians(spread_deg)) * side_axis
                grow(end, child, side_axis, level + 1, seg_length * 0.8, seg_radius * 0.8)

    grow(np.asarray(root, dtype=np.float64), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), 0, length, radius)
    return segments


Case = Callable[[], tuple[np.ndarray, tuple[float, float, float]]]
ISO = (1.0, 1.0, 1.0)
ANISO = (1.6, 0.7, 0.9)


def tube() -> tuple[np.ndarray, tuple]:
    return draw_tubes((44, 32, 32), [((2, 15, 15), (40, 15, 15), 4.0)]), ISO


def y_shape() -> tuple[np.ndarray, tuple]:
    return draw_tubes((46, 24, 48), Y_SEGMENTS), ISO


def generations(n: int, spacing: tuple = ISO) -> Case:
    return lambda: (fit_tubes(rotating_tree_segments((0, 0, 0), 30.0, 4.0, n), spacing), spacing)


def flipped() -> tuple[np.ndarray, tuple]:
    volume, spacing = generations(3)()
    return np.ascontiguousarray(volume[::-1, :, ::-1]), spacing


def transposed() -> tuple[np.ndarray, tuple]:
    volume, spacing = generations(3, ANISO)()
    return np.ascontiguousarray(volume.transpose(2, 0, 1)), (ANISO[2], ANISO[0], ANISO[1])


def truncated_trachea() -> tuple[np.ndarray, tuple]:
    # the trachea enters through the volume's first slice, as in a scan that starts below the larynx
    segments = [((-10, 12, 24), (20, 12, 24), 4.0), *Y_SEGMENTS[1:]]
    return draw_tubes((46, 24, 48), segments), ISO


def with_spurs() -> tuple[np.ndarray, tuple]:
    # a stub on the trachea protruding 4 mm (< its 4 mm radius): pruned as a spur; a 2.5 mm bump on a
    # child: its skeleton piece is under 5 voxels and dropped
    bumps = [((10, 12, 24), (10, 12, 30), 2.0), ((30, 12, 32), (30, 16.5, 32), 2.0)]
    return draw_tubes((46, 24, 48), [*Y_SEGMENTS, *bumps]), ISO


def with_island() -> tuple[np.ndarray, tuple]:
    volume = draw_tubes((46, 24, 48), Y_SEGMENTS)
    volume[38:44, 2:8, 20:28] = 1  # a separate blob: removed by the largest-component step
    return volume, ISO


def with_loop() -> tuple[np.ndarray, tuple]:
    # a thin bridge joins the two children: one cycle, broken by removing its narrowest branch
    bridge = [((34, 12, 13), (34, 12, 35), 1.5)]
    return draw_tubes((46, 24, 48), [*Y_SEGMENTS, *bridge]), ISO


def ladder() -> tuple[np.ndarray, tuple]:
    # a trachea on the top rung of a ladder (two rails, a thin middle rung, a thin bottom rung): two cycles
    wide, thin = 3.0, 1.5
    segments = [((2, 10, 24), (14, 10, 24), 4.0), ((14, 10, 12), (14, 10, 36), wide),
                ((14, 10, 12), (54, 10, 12), wide), ((14, 10, 36), (54, 10, 36), wide),
                ((34, 10, 12), (34, 10, 36), thin), ((54, 10, 12), (54, 10, 36), thin)]
    return draw_tubes((60, 20, 48), segments), ISO


CASE_BUILDERS: dict[str, Case] = {
    "tube": tube, "Y": y_shape, "three generations": generations(3), "four generations": generations(4),
    "anisotropic spacing": generations(3, ANISO), "flipped axes": flipped, "transposed axes": transposed,
    "truncated trachea": truncated_trachea, "spurs": with_spurs, "island": with_island, "loop": with_loop,
    "ladder": ladder,
}


@pytest.fixture(scope="session")
def airway_case() -> Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]:
    """``airway_case(name)`` -> (uint8 volume (Z, Y, X), spacing (Z, Y, X) mm) of a hand-built tree."""
    return lambda name: CASE_BUILDERS[name]()


@pytest.fixture(scope="session")
def tubes() -> Callable[..., np.ndarray]:
    """``tubes(shape, segments, spacing_zyx)``: draw capsules (see ``draw_tubes``)."""
    return draw_tubes


@pytest.fixture
def truth_tree() -> tuple[dict, np.ndarray, np.ndarray]:
    """(truth sidecar, label, prediction) on a 1 mm grid (21, 41, 50): a root along x (id 7, absolute generation
    3, entering like a crop's root) with two children (ids 8, 9, generation 4); the prediction misses id 8."""
    truth = {
        "origin_xyz": [0.0, 0.0, 0.0], "spacing_xyz": [1.0, 1.0, 1.0], "shape_zyx": [21, 41, 50],
        "branches": [
            {"id": 7, "generation": 3, "labelled": True, "start_mm": [-5.0, 20.0, 10.0], "end_mm": [25.0, 20.0, 10.0]},
            {"id": 8, "generation": 4, "labelled": True, "start_mm": [25.0, 20.0, 10.0], "end_mm": [45.0, 6.0, 10.0]},
            {"id": 9, "generation": 4, "labelled": True, "start_mm": [25.0, 20.0, 10.0], "end_mm": [45.0, 34.0, 10.0]},
        ],
    }
    z, y, x = np.mgrid[0:21, 0:41, 0:50].astype(float)
    points = np.stack([x, y, z], axis=-1)
    label = np.zeros(z.shape, bool)
    for b in truth["branches"]:
        a, e = np.asarray(b["start_mm"]), np.asarray(b["end_mm"])
        t = np.clip(((points - a) @ (e - a)) / ((e - a) @ (e - a)), 0.0, 1.0)
        label |= np.linalg.norm(points - a - t[..., None] * (e - a), axis=-1) <= 2.5
    prediction = label.copy()
    prediction[:, :20, 30:] = False  # the child towards low y is missed
    return truth, label.astype(np.uint8), prediction.astype(np.uint8)
