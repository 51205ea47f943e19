"""Phantom intensities, label and construction truth, checked against the sidecar with code of the tests' own."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from nnunet_airway.phantoms import Phantom, case_seed, generate_phantom
from nnunet_airway.phantoms.tree import TreeParameters

# ---------------------------------------------------------------- helpers written for the tests


def voxel_of(phantom: Phantom, point_xyz) -> tuple[int, int, int]:
    """(z, y, x) index of the voxel whose centre is nearest to a physical point (identity direction)."""
    ijk = np.rint((np.asarray(point_xyz) - phantom.geometry.origin) / phantom.geometry.spacing).astype(int)
    return int(ijk[2]), int(ijk[1]), int(ijk[0])


def cube(phantom: Phantom, point_xyz, half: int = 2) -> np.ndarray:
    k, j, i = voxel_of(phantom, point_xyz)
    return phantom.ct[k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1]


def distances_to_segment(phantom: Phantom, start, end) -> np.ndarray:
    """Distance (mm) of every voxel centre to the segment start-end, on the whole grid (float64)."""
    nz, ny, nx = phantom.ct.shape
    sx, sy, sz = phantom.geometry.spacing
    ox, oy, oz = phantom.geometry.origin
    x = (ox + sx * np.arange(nx))[None, None, :]
    y = (oy + sy * np.arange(ny))[None, :, None]
    z = (oz + sz * np.arange(nz))[:, None, None]
    a, b = np.asarray(start, float), np.asarray(end, float)
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / (ab @ ab), 0.0, 1.0)
    return np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2)


def direction(branch: dict) -> np.ndarray:
    d = np.subtract(branch["end_mm"], branch["start_mm"])
    return d / np.linalg.norm(d)


def angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))))


# ---------------------------------------------------------------- intensities


def test_outside_air_body_and_lung_intensities(small_phantom: Phantom) -> None:
    ct, anatomy = small_phantom.ct, small_phantom.truth["anatomy"]
    corners = np.concatenate([ct[:, :3, :3].ravel(), ct[:, -3:, -3:].ravel()])
    assert -1010 <= np.median(corners) <= -975
    # the anterior chest wall at the midline, just inside the fat layer: muscle
    bx, by = anatomy["body_centre_xy_mm"]
    wall_y = by - anatomy["body_semi_axes_mm"][1] + anatomy["fat_thickness_mm"] + 6.0
    z_mid = anatomy["carina_mm"][2]
    assert 20 <= np.median(cube(small_phantom, (bx, wall_y, z_mid), 1)) <= 70
    for lung in anatomy["lungs"]:
        cx, cy, cz = lung["centre_mm"]
        lateral = cx + 0.5 * np.sign(cx - bx) * lung["semi_axes_mm"][0]  # away from the hilum's vessels
        assert -900 <= np.median(cube(small_phantom, (lateral, cy, cz + 30.0))) <= -790


def test_noise_is_within_20_to_40_hu(small_phantom: Phantom) -> None:
    corners = small_phantom.ct[:, :4, :4].astype(float)
    corners = corners[corners > -1024]  # clipped air is no noise sample
    assert 15.0 <= corners.std() <= 45.0
    assert 20.0 <= small_phantom.truth["intensities_hu"]["noise"] <= 40.0


def test_lumen_is_darker_than_wall_and_parenchyma(medium_phantom: Phantom) -> None:
    ct, label = medium_phantom.ct.astype(float), medium_phantom.label.astype(bool)
    core = ndimage.binary_erosion(label, iterations=1)
    ring = ndimage.binary_dilation(label, iterations=1) & ~label
    lumen, wall = ct[core].mean(), ct[ring].mean()
    lung = medium_phantom.truth["anatomy"]["lungs"][0]
    cx, cy, cz = lung["centre_mm"]
    parenchyma = np.median(cube(medium_phantom, (cx - 0.5 * lung["semi_axes_mm"][0], cy, cz + 30.0)))
    assert lumen < -950
    assert wall > lumen + 300
    assert parenchyma > lumen + 100


def test_wall_contrast_fades_with_calibre(medium_phantom: Phantom) -> None:
    walls = [(b["radius_mm"], b["wall_hu"]) for b in medium_phantom.truth["branches"]]
    radii, hu = np.array(walls).T
    order = np.argsort(radii)
    assert np.all(np.diff(hu[order]) >= -0.02)  # rounded to 0.01 HU in the sidecar
    assert hu.max() >= 50 and hu.min() <= -60


# ---------------------------------------------------------------- label


def test_label_is_uint8_binary_and_one_6_connected_tree(small_phantom: Phantom, medium_phantom: Phantom) -> None:
    for phantom in (small_phantom, medium_phantom):
        assert phantom.label.dtype == np.uint8 and phantom.ct.dtype == np.int16
        assert phantom.label.shape == phantom.ct.shape
        assert set(np.unique(phantom.label)) == {0, 1}
        assert ndimage.label(phantom.label)[1] == 1  # 6-connected


def test_label_equals_the_lumen_of_the_labelled_branches(small_phantom: Phantom) -> None:
    expected = np.zeros(small_phantom.label.shape, bool)
    near_surface = np.zeros(small_phantom.label.shape, bool)
    for branch in small_phantom.truth["branches"]:
        if branch["labelled"]:
            dist = distances_to_segment(small_phantom, branch["start_mm"], branch["end_mm"])
            expected |= dist <= branch["radius_mm"]
            near_surface |= np.abs(dist - branch["radius_mm"]) < 0.01  # sidecar values are rounded
    differ = expected != small_phantom.label.astype(bool)
    assert not np.any(differ & ~near_surface)
    assert small_phantom.truth["label_voxels"] == int(small_phantom.label.sum())


def test_labelled_branches_lie_in_the_label_and_unlabelled_thin_ones_do_not(small_phantom: Phantom) -> None:
    ct, label = small_phantom.ct, small_phantom.label
    for branch in small_phantom.truth["branches"]:
        middle = (np.add(branch["start_mm"], branch["end_mm"])) / 2
        k, j, i = voxel_of(small_phantom, middle)
        if branch["labelled"]:
            assert label[k, j, i] == 1
            assert ct[k, j, i] < -500  # lumen (partial volume and noise on the thinnest)
    thin = [b for b in small_phantom.truth["branches"] if b["radius_mm"] < 0.3 * min(small_phantom.geometry.spacing)]
    assert thin and not any(b["labelled"] for b in thin)


# ---------------------------------------------------------------- construction truth


@pytest.mark.parametrize("which", ["small_phantom", "medium_phantom"])
def test_sidecar_tree_is_a_consistent_dichotomous_tree(which: str, request: pytest.FixtureRequest) -> None:
    truth = request.getfixturevalue(which).truth
    branches = truth["branches"]
    assert truth["n_branches"] == len(branches)
    assert truth["n_labelled_branches"] == sum(b["labelled"] for b in branches)
    assert [b["id"] for b in branches] == list(range(len(branches)))
    assert branches[0]["parent"] is None and branches[0]["generation"] == 0 and branches[0]["labelled"]
    assert truth["max_generation"] == max(b["generation"] for b in branches) >= 8
    for branch in branches[1:]:
        parent = branches[branch["parent"]]
        assert branch["parent"] < branch["id"]
        assert branch["generation"] == parent["generation"] + 1
        assert np.allclose(branch["start_mm"], parent["end_mm"], atol=2e-3)
        length = np.linalg.norm(np.subtract(branch["end_mm"], branch["start_mm"]))
        assert branch["length_mm"] == pytest.approx(length, abs=5e-3)
        siblings = [b for b in branches if b["parent"] == branch["parent"]]
        assert len(siblings) == 2
        assert all(s["labelled"] == branch["labelled"] for s in siblings)
        if branch["labelled"]:
            assert parent["labelled"]
            assert branch["length_mm"] >= 3 * branch["radius_mm"] - 1e-3
    for branch in branches:
        assert len([b for b in branches if b["parent"] == branch["id"]]) in (0, 2)
        assert branch["children"] == [b["id"] for b in branches if b["parent"] == branch["id"]]


@pytest.mark.parametrize("which", ["small_phantom", "medium_phantom"])
def test_radius_ratios_angles_and_plane_rotations_are_physiological(which: str, request) -> None:
    branches = request.getfixturevalue(which).truth["branches"]
    params = TreeParameters()
    rotations, angles = [], []
    for branch in branches[1:]:
        parent = branches[branch["parent"]]
        ratio = branch["radius_mm"] / parent["radius_mm"]
        angle = angle_deg(direction(parent), direction(branch))
        if branch["generation"] == 1:  # main bronchi: the right one wider and steeper
            (ratio_low, _), (_, ratio_high) = params.main_bronchus_ratio[::-1]
            (angle_low, _), (_, angle_high) = params.main_bronchus_angle
        else:  # calibre falls faster over the central airways than past them (Weibel)
            (_, ratio_high), (ratio_low, _) = params.child_ratios(branch["generation"])
            angle_low, angle_high = params.major_angle[0], params.minor_angle[1]
            angles.append(angle)
        assert ratio_low - 2e-3 <= ratio <= ratio_high + 2e-3
        assert angle_low - 0.1 <= angle <= angle_high + 0.1
        if branch["generation"] >= 2:
            grandparent = branches[parent["parent"]]
            parent_plane = np.cross(direction(grandparent), direction(parent))
            own_plane = np.cross(direction(parent), direction(branch))
            between = angle_deg(parent_plane, own_plane)
            rotations.append(min(between, 180.0 - between))
    # branching angles spread as real ones do; in generator version 2 half of them sat at one clamp (34 degrees)
    assert max(np.mean(np.abs(np.array(angles) - a) < 0.5) for a in angles) < 0.2
    assert 15.0 <= np.median(angles) <= 32.0
    # the branching plane turns: 60-120 degrees (+-7) as a rule, 40-50 (+-5) where nothing else fits
    assert min(rotations) >= 34.9
    assert np.mean(np.array(rotations) >= 52.9) > 0.8
    # the trachea and main bronchi: adult calibre (the grid is derived to cover an adult chest)
    assert 7.5 <= branches[0]["radius_mm"] <= 8.5
    radii_by_generation = {}
    for b in branches:
        radii_by_generation.setdefault(b["generation"], []).append(b["radius_mm"])
    assert max(radii_by_generation[max(radii_by_generation)]) < 0.5 * min(request.getfixturevalue(which).geometry.spacing)


@pytest.mark.slow
def test_small_grid_still_labels_trachea_main_bronchi_and_lobar_bronchi() -> None:
    for seed in range(3):
        truth = generate_phantom(seed, (64, 96, 96)).truth
        generations = [b["generation"] for b in truth["branches"] if b["labelled"]]
        assert generations.count(0) == 1 and generations.count(1) == 2 and generations.count(2) >= 2
        assert truth["max_generation"] >= 8


def test_branches_beyond_the_main_bronchi_end_inside_the_lungs(medium_phantom: Phantom) -> None:
    lungs = medium_phantom.truth["anatomy"]["lungs"]
    for branch in medium_phantom.truth["branches"]:
        if branch["generation"] < 2:
            continue
        end = np.asarray(branch["end_mm"])
        inside = [np.sum(((end - lung["centre_mm"]) / lung["semi_axes_mm"]) ** 2) < 1.0 for lung in lungs]
        assert any(inside), branch["id"]
        if branch["labelled"]:
            k, j, i = voxel_of(medium_phantom, end)
            assert medium_phantom.ct[k, j, i] < -700  # its own lumen


def test_labelled_branches_keep_apart(medium_phantom: Phantom) -> None:
    """Non-adjacent labelled branches: their lumens are separated by at least one voxel."""
    branches = [b for b in medium_phantom.truth["branches"] if b["labelled"]]
    t = np.linspace(0.0, 1.0, 25)[:, None]
    samples = {b["id"]: np.asarray(b["start_mm"]) + t * np.subtract(b["end_mm"], b["start_mm"]) for b in branches}
    voxel = max(medium_phantom.geometry.spacing)
    for a in branches:
        for b in branches:
            adjacent = a["id"] >= b["id"] or b["parent"] in (a["id"], a["parent"]) or a["parent"] == b["id"]
            if adjacent:
                continue
            gap = np.linalg.norm(samples[a["id"]][:, None] - samples[b["id"]][None], axis=2).min()
            assert gap - a["radius_mm"] - b["radius_mm"] >= voxel * 0.9, (a["id"], b["id"])


def test_explicit_spacing_scales_the_chest_into_a_small_field_of_view() -> None:
    phantom = generate_phantom(2, (64, 80, 80), spacing_xyz=(2.0, 2.0, 2.5))
    truth = phantom.truth
    assert truth["spacing_xyz"] == [2.0, 2.0, 2.5]
    assert truth["anatomy_scale"] == pytest.approx(min(160 / 350, 160 / 350, 160 / 300), abs=1e-4)
    assert truth["branches"][0]["radius_mm"] == pytest.approx(8.0 * truth["anatomy_scale"], rel=0.06)
    assert ndimage.label(phantom.label)[1] == 1 and truth["n_labelled_branches"] >= 3


@pytest.mark.parametrize("shape, spacing", [((8, 96, 96), None), ((20, 20, 20), None),
                                            ((64, 96, 96), (9.0, 9.0, 9.0))])
def test_grids_too_small_or_coarse_are_refused(shape, spacing) -> None:
    with pytest.raises(ValueError, match="too (small|coarse)"):
        generate_phantom(0, shape, spacing)


# ---------------------------------------------------------------- determinism


@pytest.mark.slow
def test_same_seed_gives_identical_phantoms_and_different_seeds_differ() -> None:
    a, b = generate_phantom(5, (56, 80, 80)), generate_phantom(5, (56, 80, 80))
    assert a.ct.tobytes() == b.ct.tobytes() and a.label.tobytes() == b.label.tobytes()
    assert a.truth == b.truth and a.geometry == b.geometry
    c = generate_phantom(6, (56, 80, 80))
    assert a.ct.tobytes() != c.ct.tobytes()
    assert a.truth["branches"] != c.truth["branches"]


def test_case_seeds_are_distinct_and_stable() -> None:
    seeds = [case_seed(0, i) for i in range(50)] + [case_seed(1, i) for i in range(50)]
    assert len(set(seeds)) == 100
    assert case_seed(3, 4) == case_seed(3, 4)
