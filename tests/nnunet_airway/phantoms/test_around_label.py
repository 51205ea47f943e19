"""Rendering around a given lumen label: hand-built tubes, exact layer values with blur and noise off."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_airway.image_io import Geometry
from nnunet_airway.phantoms.around_label import (
    LabelBranch,
    block_mean,
    canonical_axes,
    canonical_geometry,
    coarser_grid,
    grow_extensions,
    render_around_label,
    wall_thickness_mm,
)
from nnunet_airway.phantoms.render import Grid, Intensities, wall_intensity
from nnunet_airway.phantoms.tree import TreeParameters

SPACING = (0.5, 0.5, 0.5)
SHAPE = (40, 48, 48)
PLAIN = Intensities(noise=0.0, psf_fwhm_mm=0.0, lung_texture=0.0, lung_gravity=0.0, vessel=300.0, lumen=-990.0,
                    wall_large=80.0, wall_small=-100.0, lung=-850.0)


def _tube(radius: float = 3.0) -> tuple[np.ndarray, Geometry, list[LabelBranch]]:
    """A tube of ``radius`` mm along z through the middle of the grid, with its centreline as one branch."""
    geometry = Geometry(SPACING, (0.0, 0.0, 0.0))
    z, y, x = np.meshgrid(*[np.arange(n) * 0.5 for n in SHAPE], indexing="ij")
    cy, cx = (SHAPE[1] - 1) * 0.25, (SHAPE[2] - 1) * 0.25
    label = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    points = np.stack([np.full(SHAPE[0], cx), np.full(SHAPE[0], cy), np.arange(SHAPE[0]) * 0.5], axis=1)[::-1]
    return label, geometry, [LabelBranch(0, None, 0, points, radius)]


def _lungs_everywhere(label: np.ndarray) -> np.ndarray:
    return np.ones(label.shape, bool)


def test_wall_thickness_follows_the_t_over_d_ratio_and_its_cap() -> None:
    t = float(wall_thickness_mm(2.0, 0.2))
    assert t == pytest.approx(0.2 * 2.0 * (2.0 + t))  # T / D with D the total diameter
    assert float(wall_thickness_mm(50.0, 0.2)) == 2.5


def test_lumen_wall_vessel_and_lung_take_their_values_on_a_hand_built_tube() -> None:
    label, geometry, branches = _tube()
    rng = np.random.default_rng(0)
    out = render_around_label(label, geometry, branches, PLAIN, rng, t_over_d=0.18, bronchoarterial=0.8,
                              lung_mask=_lungs_everywhere(label))
    ct = out.ct.astype(float)
    assert out.ct.shape == label.shape and out.ct.dtype == np.int16
    assert np.all(ct[label] == -990.0)  # the label is the lumen, no partial volume inside it
    thickness = float(wall_thickness_mm(3.0, 0.18))
    z, y, x = np.meshgrid(*[np.arange(n) * 0.5 for n in SHAPE], indexing="ij")
    r = np.hypot(y - (SHAPE[1] - 1) * 0.25, x - (SHAPE[2] - 1) * 0.25)
    mid_wall = (r > 3.0 + 0.6) & (r < 3.0 + thickness - 0.6) & (z > 3) & (z < 16)
    # the trachea's wall: wall_large, graded down a little where the calibre read off the voxel grid falls short
    # of 3 mm (the centreline voxels lie up to half a voxel off the axis)
    low = wall_intensity(3.0 - 2 * 0.5, 3.0, PLAIN)
    assert mid_wall.any() and np.all((ct[mid_wall] >= low - 1.0) & (ct[mid_wall] <= 81.0))
    assert np.median(ct[mid_wall]) > 70.0
    far = (r > 12.0)
    lung = ct[far]
    assert np.median(lung) == pytest.approx(-850.0, abs=1.0)  # the lung, away from the tube and its artery
    assert out.vessels == 0  # the trachea has no accompanying artery


def test_an_artery_runs_beside_a_child_branch_at_the_bronchoarterial_calibre() -> None:
    label, geometry, branches = _tube(radius=2.0)
    child = LabelBranch(1, 0, 1, branches[0].points_mm.copy(), 2.0)
    out = render_around_label(label, geometry, [branches[0], child], PLAIN, np.random.default_rng(1), t_over_d=0.18,
                              bronchoarterial=0.8, lung_mask=_lungs_everywhere(label))
    assert out.vessels == 2  # an artery and a vein for the child
    ct = out.ct.astype(float)
    assert np.sum(ct >= 299.0) > 100  # the artery's core at vessel HU (radius 2.5 mm)
    assert np.all(ct[label] == -990.0)  # vessels never cover the lumen


def test_grown_lungs_surround_the_tree_and_keep_clear_of_the_trachea() -> None:
    label, geometry, branches = _tube(radius=2.0)
    child_points = branches[0].points_mm[-10:] + np.array([3.0, 0.0, 0.0])
    tree = [LabelBranch(0, None, 0, branches[0].points_mm[:20], 2.0, (1,)),
            LabelBranch(1, 0, 1, child_points, 1.5)]
    out = render_around_label(label, geometry, tree, PLAIN, np.random.default_rng(2), t_over_d=0.18,
                              bronchoarterial=0.8)
    assert out.lungs.any()
    beside_trachea = out.lungs[-4:, SHAPE[1] // 2, SHAPE[2] // 2 - 6]  # 3 mm off the axis, outside the 2 mm lumen
    assert not beside_trachea.any()  # the mediastinum around the top of the trachea holds no lung


def test_extensions_stay_out_of_the_label_and_darken_the_ct() -> None:
    label, geometry, branches = _tube(radius=1.5)
    short = LabelBranch(1, 0, 1, branches[0].points_mm[:12], 1.5)  # ends in the middle of the grid
    tree = [LabelBranch(0, None, 0, branches[0].points_mm[:2], 1.5, (1,)), short]
    label = label & (np.arange(SHAPE[0])[:, None, None] * 0.5 >= short.points_mm[-1][2] - 1.5)
    lungs = _lungs_everywhere(label)
    plain = render_around_label(label, geometry, tree, PLAIN, np.random.default_rng(3), 0.18, 0.8, lung_mask=lungs)
    extended = render_around_label(label, geometry, tree, PLAIN, np.random.default_rng(3), 0.18, 0.8,
                                   lung_mask=lungs, extend=True)
    assert extended.extensions and all(e.generation >= 2 for e in extended.extensions)
    assert np.array_equal(plain.ct[label], extended.ct[label])
    darker = (extended.ct.astype(int) < plain.ct.astype(int) - 100) & ~label
    assert darker.sum() > 20  # the extensions' lumens, outside the label


def test_a_lumen_margin_puts_air_past_the_label_and_moves_the_wall_out() -> None:
    label, geometry, branches = _tube()
    z, y, x = np.meshgrid(*[np.arange(n) * 0.5 for n in SHAPE], indexing="ij")
    r = np.hypot(y - (SHAPE[1] - 1) * 0.25, x - (SHAPE[2] - 1) * 0.25)
    ring = ~label & (r < 3.0 + 0.45) & (z > 3) & (z < 16)  # the first voxels outside the label
    thickness = float(wall_thickness_mm(3.0, 0.18))
    beyond = (r > 3.0 + thickness + 0.05) & (r < 3.0 + thickness + 0.35) & (z > 3) & (z < 16)  # lung at margin 0
    cts = [render_around_label(label, geometry, branches, PLAIN, np.random.default_rng(0), 0.18, 0.8,
                               lung_mask=_lungs_everywhere(label), lumen_margin_mm=m).ct.astype(float)
           for m in (0.0, 0.25, 0.5)]
    assert all(np.all(ct[label] == -990.0) for ct in cts)  # the label is untouched
    rings = [float(np.median(ct[ring])) for ct in cts]
    assert rings[0] > rings[1] > rings[2]  # more air in the first ring the wider the margin
    assert rings[2] < -600 < rings[0]
    walls = [float(np.mean(ct[beyond] > -400)) for ct in cts]  # wall voxels past the margin-free wall's end
    assert walls[0] < 0.1 and walls[2] > 0.9  # the wall is pushed out by the margin
    with pytest.raises(ValueError, match="lumen_margin_mm"):
        render_around_label(label, geometry, branches, PLAIN, np.random.default_rng(0), 0.18, 0.8,
                            lumen_margin_mm=-0.1)


def test_grow_extensions_respects_the_least_radius() -> None:
    _, _, branches = _tube(radius=0.45)
    tree = [LabelBranch(0, None, 0, branches[0].points_mm[:2], 1.0, (1,)), LabelBranch(1, 0, 1, branches[0].points_mm, 0.45)]
    grown = grow_extensions(tree, lambda p: np.ones(len(p)), lambda p: np.full(len(p), 99.0), 0.3,
                            np.random.default_rng(0))
    assert grown and all(e.radius_mm >= 0.3 for e in grown)
    assert {e.parent for e in grown} <= {1} | {e.id for e in grown} and any(e.parent == 1 for e in grown)


def test_extensions_branch_by_the_generators_deep_airway_rules() -> None:
    params = TreeParameters()
    _, _, branches = _tube(radius=1.5)
    tree = [LabelBranch(0, None, 0, branches[0].points_mm[:2], 3.0, (1,)), LabelBranch(1, 0, 1, branches[0].points_mm, 1.5)]
    axis = branches[0].points_mm[-1] - branches[0].points_mm[0]
    axis /= np.linalg.norm(axis)
    first = [e for seed in range(20) for e in grow_extensions(tree, lambda p: np.ones(len(p)),
                                                               lambda p: np.full(len(p), 99.0), 0.3,
                                                               np.random.default_rng(seed), generations=1)]
    assert len(first) == 40  # both children of every draw: nothing stands in their way
    for wider, narrower in zip(first[::2], first[1::2], strict=True):
        for child, ratio, angle in ((wider, params.deep_major_ratio, params.major_angle),
                                    (narrower, params.deep_minor_ratio, params.minor_angle)):
            direction = (child.end - child.start) / np.linalg.norm(child.end - child.start)
            degrees = np.degrees(np.arccos(np.clip(direction @ axis, -1.0, 1.0)))
            length = np.linalg.norm(child.end - child.start) / child.radius_mm
            assert ratio[0] <= child.radius_mm / 1.5 <= ratio[1]
            assert angle[0] - 1e-6 <= degrees <= angle[1] + 1e-6
            assert params.length_per_radius[0] - 1e-6 <= length <= params.length_per_radius[1] + 1e-6


@pytest.mark.parametrize("direction, axes, flip", [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 1, 2), (False, False, False)),
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (0, 1, 2), (False, True, True)),
    ((0, 1, 0, 1, 0, 0, 0, 0, 1), (0, 2, 1), (False, False, False)),
])
def test_canonical_axes_of_axis_aligned_directions(direction, axes, flip) -> None:
    found = canonical_axes(direction)
    assert found is not None and found.axes == axes and found.flip == flip
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    assert np.array_equal(found.from_canonical(found.to_canonical(array)), array)


def test_an_oblique_direction_has_no_canonical_axes() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    assert canonical_axes((c, -s, 0, s, c, 0, 0, 0, 1)) is None


def test_canonical_geometry_puts_the_first_voxel_at_the_physical_low_corner() -> None:
    geometry = Geometry((0.5, 0.6, 0.7), (10.0, 20.0, 30.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    shape = (4, 5, 6)
    canonical = canonical_geometry(geometry, shape, canonical_axes(geometry.direction))
    assert canonical.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert canonical.origin == pytest.approx((10.0 - 0.5 * 5, 20.0 - 0.6 * 4, 30.0))
    assert canonical.spacing == (0.5, 0.6, 0.7)


def test_block_mean_and_the_coarser_grid_are_exact_on_a_tiny_array() -> None:
    array = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    means = block_mean(array, (2, 2, 3))
    assert means.shape == (1, 2, 2)
    assert means[0, 0, 0] == pytest.approx(np.mean([0, 1, 2, 6, 7, 8, 24, 25, 26, 30, 31, 32]))
    coarse = coarser_grid(Grid((2, 4, 6), Geometry((0.5, 1.0, 2.0), (10.0, 20.0, 30.0))), (2, 2, 3))
    assert coarse.shape == (1, 2, 2)
    assert np.allclose(coarse.spacing, (1.5, 2.0, 4.0)) and np.allclose(coarse.origin, (10.5, 20.5, 31.0))


def test_an_averaged_render_is_the_mean_of_the_fine_one() -> None:
    label, geometry, branches = _tube()
    lungs = _lungs_everywhere(label)
    fine = render_around_label(label, geometry, branches, PLAIN, np.random.default_rng(4), 0.18, 0.8, lung_mask=lungs)
    averaged = render_around_label(label, geometry, branches, PLAIN, np.random.default_rng(4), 0.18, 0.8,
                                   lung_mask=lungs, average_zyx=(2, 4, 4))
    assert averaged.ct.shape == (20, 12, 12)
    # the fine CT was rounded to integers before this mean, the averaged one after
    assert np.abs(averaged.ct - block_mean(fine.ct.astype(np.float32), (2, 4, 4))).max() <= 1.0
    # the tube's 3 mm lumen is 3 averaged voxels wide: its border voxels mix lumen and wall
    centre = averaged.ct[10, 5:7, 5:7].astype(float)
    assert centre.max() < -600 and averaged.ct[10, 5, 3] > centre.max() + 100
    with pytest.raises(ValueError, match="divisible"):
        render_around_label(label, geometry, branches, PLAIN, np.random.default_rng(4), 0.18, 0.8,
                            lung_mask=lungs, average_zyx=(3, 3, 3))
