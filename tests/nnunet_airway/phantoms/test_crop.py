"""Crops at clinical resolution (``crop="lobe"``/``"lung"``): sidecar, geometry, label and the issue's targets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from nnunet_airway.cli import main
from nnunet_airway.image_io import read_image
from nnunet_airway.phantoms import Phantom, case_seed, generate, generate_phantom
from nnunet_airway.phantoms.generate import (
    DEEP_CROP_MIN_GENERATION,
    DEEP_CROP_MIN_LABELLED,
    crop_depth,
    crop_is_deep_enough,
    grow_case,
    holds_deep_crops,
)
from nnunet_airway.phantoms.preview import preview_panels

CROP_SHAPE, CROP_SPACING = (64, 96, 96), (0.9, 0.9, 0.9)


@pytest.fixture(scope="module")
def lobe() -> Phantom:
    return generate_phantom(5, CROP_SHAPE, CROP_SPACING, crop="lobe")


@pytest.mark.slow
def test_sidecar_of_a_fixed_seed(lobe: Phantom) -> None:
    truth = lobe.truth
    crop = dict(truth["crop"])
    rule = crop.pop("label_rule")
    assert crop == {
        "kind": "lobe", "tree_attempt": 0, "deep_target_met": None, "root": 51, "root_generation": 5, "root_parent": 26, "root_radius_mm": 1.7505,
        "root_entry_mm": [67.741, 23.893, -430.862],
        "box_low_mm": [57.85, 23.712, -489.138], "box_high_mm": [144.25, 110.112, -431.538],
        "box_offset_zyx": [60, 214, 252], "chest_grid_shape_zyx": [334, 389, 389],
        "generations": "absolute: trachea = 0; the root's generation is root_generation",
    }
    assert "descendants" in rule and "label_min_radius_mm" in rule
    assert truth["anatomy_scale"] == 1.0
    assert truth["shape_zyx"] == list(CROP_SHAPE) and truth["spacing_xyz"] == pytest.approx(CROP_SPACING)
    assert truth["n_labelled_branches"] == 15 and truth["max_labelled_generation"] == 8
    assert [b["id"] for b in truth["branches"] if b["labelled"]] == [
        51, 95, 96, 167, 168, 169, 170, 295, 296, 297, 298, 299, 300, 301, 302]
    assert truth["label_voxels"] == int(lobe.label.sum()) == 862
    # the grid's first voxel centre lies half a voxel inside the box's low face
    assert np.allclose(np.asarray(truth["origin_xyz"]) - 0.45, crop["box_low_mm"], atol=2e-3)
    assert json.loads(json.dumps(truth)) == truth  # plain JSON


@pytest.mark.slow
def test_drawn_branches_are_the_roots_subtree_and_labelled_ones_lie_inside_the_box(lobe: Phantom) -> None:
    truth = lobe.truth
    branches = {b["id"]: b for b in truth["branches"]}
    root = truth["crop"]["root"]
    assert truth["branches"][0]["id"] == root and branches[root]["generation"] == truth["crop"]["root_generation"]
    for b in truth["branches"][1:]:
        assert b["parent"] in branches  # every drawn branch descends from the root
        assert b["generation"] == branches[b["parent"]]["generation"] + 1
    low, high = np.asarray(truth["crop"]["box_low_mm"]), np.asarray(truth["crop"]["box_high_mm"])
    for b in truth["branches"][1:]:
        if b["labelled"]:
            for point in (b["start_mm"], b["end_mm"]):
                assert np.all(np.asarray(point) > low) and np.all(np.asarray(point) < high)
    # the root enters through a face: drawn from its entry point, its lumen reaches the volume boundary
    assert branches[root]["start_mm"] == truth["crop"]["root_entry_mm"]
    faces = [lobe.label[0], lobe.label[-1], lobe.label[:, 0], lobe.label[:, -1], lobe.label[:, :, 0],
             lobe.label[:, :, -1]]
    assert sum(int(face.any()) for face in faces) >= 1
    assert ndimage.label(lobe.label, ndimage.generate_binary_structure(3, 1))[1] == 1


@pytest.mark.slow
def test_same_seed_gives_the_same_crop(lobe: Phantom) -> None:
    again = generate_phantom(5, CROP_SHAPE, CROP_SPACING, crop="lobe")
    assert again.truth == lobe.truth
    assert np.array_equal(again.ct, lobe.ct) and np.array_equal(again.label, lobe.label)


@pytest.mark.slow
def test_lobe_crops_at_0_7_mm_hold_40_branches_to_generation_6_within_10_s() -> None:
    counts, deepest = [], []
    for index in range(3):
        start = time.process_time()
        phantom = generate_phantom(case_seed(0, index), (128, 160, 160), (0.7, 0.7, 0.7), crop="lobe")
        assert time.process_time() - start <= 10.0
        counts.append(phantom.truth["n_labelled_branches"])
        deepest.append(phantom.truth["max_labelled_generation"])
    assert np.mean(counts) >= 40
    assert min(deepest) >= 6


def test_unknown_crop_is_refused() -> None:
    with pytest.raises(ValueError, match="crop must be one of"):
        generate_phantom(0, CROP_SHAPE, CROP_SPACING, crop="heart")


def test_crop_at_a_coarse_spacing_is_refused() -> None:
    with pytest.raises(ValueError, match="clinical spacings"):
        generate_phantom(0, CROP_SHAPE, (3.0, 3.0, 3.0), crop="lobe")


@pytest.mark.slow
def test_command_writes_a_lobe_crop(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["phantoms", "--out", str(out), "--crop", "lobe", "--shape", *map(str, CROP_SHAPE),
                 "--spacing", *map(str, CROP_SPACING)])
    assert code == 0
    truth = json.loads((out / "truth" / "phantom_000.json").read_text())
    assert truth["crop"]["kind"] == "lobe"
    label, geometry = read_image(out / "labels" / "phantom_000.nii.gz")
    assert label.shape == CROP_SHAPE and int(label.sum()) == truth["label_voxels"]
    assert np.allclose(geometry.origin, truth["origin_xyz"])


@pytest.mark.slow
def test_preview_panels_of_a_crop_show_the_lungs_and_the_labelled_tree(lobe: Phantom) -> None:
    # a crop has no outside air, so the whole chest's body test found only the chest wall: the MinIP showed
    # soft tissue (above its -750 HU window) and the MIP in the lungs was blank (-1000)
    minip, mip, coronal, _ = preview_panels(lobe)
    assert (mip.image > -900).mean() > 0.5  # vessels and parenchyma inside the lungs
    assert (minip.image < -750).mean() > 0.5  # lung and airways inside the MinIP's window
    j = int(np.argmax(lobe.label.sum(axis=(0, 2))))  # the carina is outside a crop: the slice with most label
    y_mm = lobe.geometry.origin[1] + j * lobe.geometry.spacing[1]
    assert coronal.title == f"CT coronal slice y={y_mm:.0f} mm (most label)"
    assert np.array_equal(coronal.image, lobe.ct[:, j, :])


@pytest.mark.slow
def test_a_tree_whose_label_stops_early_is_grown_again_for_a_crop() -> None:
    # case_seed(0, 10)'s first tree labels 5 branches (two unlabelled gen-2 siblings stop the label), so no
    # lobe subtree of >= 3 labelled branches exists; choose_crop raised and thin_branches.py stopped on it
    phantom = generate_phantom(case_seed(0, 10), (128, 160, 160), (0.7, 0.7, 0.7), crop="lobe")
    assert phantom.truth["crop"]["tree_attempt"] >= 1
    assert phantom.truth["n_labelled_branches"] >= 3 and phantom.label.any()
    again = generate_phantom(case_seed(0, 10), (128, 160, 160), (0.7, 0.7, 0.7), crop="lobe")
    assert np.array_equal(again.ct, phantom.ct) and again.truth == phantom.truth


@pytest.mark.slow
def test_a_box_too_small_is_refused_without_growing_other_trees() -> None:
    with pytest.raises(ValueError, match=r"no labelled lobe subtree fits .*mm; give more voxels") as error:
        generate_phantom(3, (16, 16, 16), (0.7, 0.7, 0.7), crop="lobe")
    assert "tried" not in str(error.value) and not error.value.label_too_shallow


DEEP_SHAPE, DEEP_SPACING = (128, 160, 160), (0.7, 0.7, 0.7)


@pytest.mark.slow
def test_a_shallow_crop_in_a_large_box_is_grown_again_to_the_target() -> None:
    # `phantoms -n 3 --seed 11 --shape 128 160 160 --spacing 0.7 0.7 0.7 --crop lobe`: the second case's first
    # tree gave a crop of 3 labelled branches reaching generation 3
    grown = grow_case(case_seed(11, 1), DEEP_SHAPE, DEEP_SPACING, "lobe", "clinical")
    assert grown.deep and grown.attempt >= 1
    n_labelled, deepest = crop_depth(grown.branches, grown.crop)
    assert n_labelled >= DEEP_CROP_MIN_LABELLED and deepest >= DEEP_CROP_MIN_GENERATION
    again = generate_phantom(case_seed(11, 1), DEEP_SHAPE, DEEP_SPACING, crop="lobe")
    assert again.truth["crop"]["tree_attempt"] == grown.attempt and again.truth["crop"]["deep_target_met"] is True
    assert again.truth["n_labelled_branches"] == n_labelled and again.truth["max_labelled_generation"] == deepest


@pytest.mark.slow
def test_when_no_tree_reaches_the_target_the_deepest_crop_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = case_seed(11, 0)
    first = grow_case(seed, DEEP_SHAPE, DEEP_SPACING, "lobe", "clinical")
    assert first.attempt == 0  # it meets the target
    monkeypatch.setattr(generate, "DEEP_CROP_MIN_LABELLED", 10**6)  # no crop can meet it
    depths = []
    for attempts in (1, 2):
        monkeypatch.setattr(generate, "CROP_TREE_ATTEMPTS", attempts)
        grown = grow_case(seed, DEEP_SHAPE, DEEP_SPACING, "lobe", "clinical")
        depths.append(crop_depth(grown.branches, grown.crop))
        assert depths[-1] == max(depths)  # the deepest of the trees grown so far
    phantom = generate_phantom(seed, DEEP_SHAPE, DEEP_SPACING, crop="lobe")
    assert phantom.truth["crop"]["deep_target_met"] is False
    assert (phantom.truth["n_labelled_branches"], phantom.truth["max_labelled_generation"]) == depths[-1]


def test_the_deep_crop_target_applies_to_boxes_of_64_mm_and_more() -> None:
    assert holds_deep_crops((96, 128, 128), (0.7, 0.7, 0.7))  # 67 x 90 x 90 mm
    assert not holds_deep_crops((64, 96, 96), (0.9, 0.9, 0.9))  # 58 mm in z
    assert holds_deep_crops((64, 96, 96), (0.9, 0.9, 1.1))  # spacing is x, y, z: 70 mm in z
    assert crop_is_deep_enough(DEEP_CROP_MIN_LABELLED, DEEP_CROP_MIN_GENERATION)
    assert not crop_is_deep_enough(DEEP_CROP_MIN_LABELLED - 1, 9) and not crop_is_deep_enough(50, 5)
