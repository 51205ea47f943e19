"""Phantoms around real labels, end to end through files: the label kept voxel for voxel, the sidecar, the CLI,
the errors; and one shared ATM'22 tree rendered and parsed (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_airway import image_io, writing
from nnunet_airway.errors import DataError
from nnunet_airway.label_phantoms import (
    _finer_grid,
    average_factor,
    phantom_from_label,
    resampled_label,
    sha256,
    write_label_phantoms,
)
from nnunet_airway.phantoms.around_label import LABEL_RANGES, coarser_grid
from nnunet_airway.phantoms.render import Grid

SHARED_TREE = Path(__file__).resolve().parents[3] / "shared" / "data" / "atm22_trees" / "ATM_224_timi.nii.gz"
SEGMENTS = [  # (start, end, radius) in mm on a 1 mm grid of (80, 64, 64): trachea, main bronchi, four more
    ((32, 32, 79), (32, 32, 50), 4.0),
    ((32, 32, 50), (18, 30, 30), 3.0), ((32, 32, 50), (46, 34, 30), 3.0),
    ((18, 30, 30), (10, 26, 8), 2.0), ((18, 30, 30), (24, 38, 8), 2.0),
    ((46, 34, 30), (54, 26, 8), 2.0), ((46, 34, 30), (40, 40, 8), 2.0),
]


def _tree_label() -> np.ndarray:
    z, y, x = np.meshgrid(np.arange(80.0), np.arange(64.0), np.arange(64.0), indexing="ij")
    label = np.zeros((80, 64, 64), bool)
    for a, b, r in SEGMENTS:
        a, b = np.asarray(a, float), np.asarray(b, float)
        ab = b - a
        t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / (ab @ ab), 0, 1)
        d2 = (x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (z - a[2] - t * ab[2]) ** 2
        label |= d2 <= r * r
    return label


@pytest.fixture(scope="module")
def tree_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "case_a.nii.gz"
    writing.write_image(path, _tree_label().astype(np.uint8), image_io.Geometry((1.0, 1.0, 1.0), (-32.0, -32.0, -100.0)))
    return path


def test_the_label_is_kept_voxel_for_voxel_and_the_ct_is_on_its_grid(tree_file: Path) -> None:
    phantom = phantom_from_label(tree_file, seed=5)
    source, geometry = image_io.read_image(tree_file)
    assert np.array_equal(phantom.label, source) and phantom.geometry == geometry
    assert phantom.ct.shape == source.shape and phantom.ct.dtype == np.int16
    lumen = phantom.ct[source > 0]
    assert np.median(lumen) < -850  # the lumen reads as air (clinical lumen -1000..-900, blur, noise)


def test_sidecar_records_the_source_the_parse_and_the_draw_for_a_fixed_seed(tree_file: Path) -> None:
    truth = phantom_from_label(tree_file, seed=5, case="case_a").truth
    again = phantom_from_label(tree_file, seed=5, case="case_a").truth
    assert truth == again  # deterministic in the seed
    assert truth["source_label"]["name"] == "case_a.nii.gz"
    assert truth["source_label"]["sha256"] == sha256(tree_file)
    assert truth["lungs"] == "grown from the tree" and truth["label_resampled"] is None
    generations = sorted(b["generation"] for b in truth["branches"])
    assert generations == [0, 1, 1, 2, 2, 2, 2]  # the hand-built tree's seven branches
    trachea = next(b for b in truth["branches"] if b["parent"] is None)
    assert trachea["start_mm"][2] > trachea["end_mm"][2]  # drawn from the top down, parent end first
    assert trachea["radius_mm"] == pytest.approx(4.0, abs=0.6)
    for key, name in (("wall_t_over_d", "wall_t_over_d"), ("bronchoarterial_ratio", "bronchoarterial"),
                      ("lumen_margin_voxels", "lumen_margin_voxels")):
        low, high, _ = LABEL_RANGES[name]
        assert low <= truth["drawn"][key] <= high
    assert truth["drawn"]["lumen_margin_mm"] == pytest.approx(truth["drawn"]["lumen_margin_voxels"] * 1.0, abs=1e-3)
    assert truth["drawn"]["n_vessels"] == 2 * 6  # an artery and a vein per bronchus below the trachea
    assert truth["label_voxels"] == int(_tree_label().sum())
    assert phantom_from_label(tree_file, seed=6).truth["drawn"] != truth["drawn"]


def test_a_flipped_direction_renders_the_same_anatomy(tree_file: Path, tmp_path: Path) -> None:
    """The same label stored with x and y running backwards: the same anatomy (the back, spine and table, where
    the physical axes put them), though not the same voxels: the skeleton of a flipped label differs slightly."""
    source, geometry = image_io.read_image(tree_file)
    flipped = tmp_path / "flipped.nii.gz"
    origin = (geometry.origin[0] + 63.0, geometry.origin[1] + 63.0, geometry.origin[2])
    writing.write_image(flipped, source[:, ::-1, ::-1].copy(), image_io.Geometry((1.0, 1.0, 1.0), origin,
                                                                                (-1, 0, 0, 0, -1, 0, 0, 0, 1)))
    plain = phantom_from_label(tree_file, seed=5)
    other = phantom_from_label(flipped, seed=5)
    assert np.array_equal(other.label, source[:, ::-1, ::-1])
    back_in_place = other.ct[:, ::-1, ::-1].astype(float)
    assert np.corrcoef(back_in_place.ravel(), plain.ct.astype(float).ravel())[0, 1] > 0.9
    posterior = plain.ct[:, -8:, :].mean()  # +y is posterior: the table and the back
    assert abs(other.ct[:, :8, :].mean() - posterior) < 20.0


def test_resampling_is_said_and_a_lung_mask_is_used(tree_file: Path, tmp_path: Path) -> None:
    mask = tmp_path / "lungs.nii.gz"
    _, geometry = image_io.read_image(tree_file)
    lungs = np.zeros((80, 64, 64), np.uint8)
    lungs[5:60, 4:60, 4:60] = 1
    writing.write_image(mask, lungs, geometry)
    phantom = phantom_from_label(tree_file, seed=1, lung_mask=mask, spacing_xyz=(2.0, 2.0, 2.0), lumen_margin_voxels=0.0)
    assert phantom.label.shape == (40, 32, 32) and phantom.geometry.spacing == (2.0, 2.0, 2.0)
    assert phantom.truth["label_resampled"]["from_spacing_xyz"] == [1.0, 1.0, 1.0]
    assert phantom.truth["lungs"] == "given"
    assert abs(int(phantom.label.sum()) * 8 - int(_tree_label().sum())) < 0.25 * _tree_label().sum()
    outside = phantom.ct[36:, :, :][phantom.label[36:] == 0]  # above the given lungs: body, no parenchyma
    assert np.median(outside) > -200
    # twice the label's spacing: drawn at 1 mm and averaged, so the lumen's border voxels mix lumen and wall
    assert "averaged over blocks of 2 x 2 x 2" in phantom.truth["label_resampled"]["ct"]
    lumen = phantom.truth["intensities_hu"]["lumen"]
    core = ndimage.binary_erosion(phantom.label)
    border = phantom.label.astype(bool) & ~core
    assert np.median(phantom.ct[border]) > np.median(phantom.ct[core]) + 100
    assert abs(np.median(phantom.ct[core]) - lumen) < 50
    # a lumen reaching half a voxel past the label's border fills the border voxels with air
    margin = phantom_from_label(tree_file, seed=1, lung_mask=mask, spacing_xyz=(2.0, 2.0, 2.0), lumen_margin_voxels=0.5)
    assert margin.truth["drawn"]["lumen_margin_mm"] == 1.0 and np.array_equal(margin.label, phantom.label)
    assert np.median(margin.ct[border]) < np.median(phantom.ct[border]) - 100


def test_the_averaging_factor_draws_at_about_1_mm_and_at_most_4_times_finer() -> None:
    assert average_factor((0.54, 0.54, 0.5), (4.17, 4.17, 3.99)) == (3, 4, 4)  # z, y, x
    assert average_factor((0.54, 0.54, 0.5), (1.5, 1.5, 1.5)) == (1, 1, 1)  # finer than 1 mm would be needed
    assert average_factor((0.5, 0.5, 0.5), (8.0, 8.0, 8.0)) == (4, 4, 4)
    assert average_factor((1.0, 1.0, 2.5), (2.0, 2.0, 2.5)) == (1, 2, 2)
    assert average_factor((1.0, 1.0, 1.0), (1.9, 1.9, 1.9)) == (1, 1, 1)


def test_bad_inputs_are_refused_naming_the_file(tree_file: Path, tmp_path: Path) -> None:
    many = tmp_path / "labelmap.nii.gz"
    writing.write_image(many, (_tree_label() * 3).astype(np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(DataError, match="labelmap.nii.gz: the label holds values 3"):
        phantom_from_label(many, seed=0)
    empty = tmp_path / "empty.nii.gz"
    writing.write_image(empty, np.zeros((20, 20, 20), np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(DataError, match="empty.nii.gz: the label has no airway voxels"):
        phantom_from_label(empty, seed=0)
    other_grid = tmp_path / "lungs.nii.gz"
    writing.write_image(other_grid, np.ones((10, 10, 10), np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(DataError, match="not on the grid of"):
        phantom_from_label(tree_file, seed=0, lung_mask=other_grid)
    oblique = tmp_path / "oblique.nii.gz"
    image = image_io.to_sitk(_tree_label().astype(np.uint8), image_io.Geometry((1.0, 1.0, 1.0)))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(oblique))
    with pytest.raises(DataError, match="oblique"):
        phantom_from_label(oblique, seed=0)
    with pytest.raises(DataError, match="no such file"):
        write_label_phantoms([tmp_path / "missing.nii.gz"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # a refused run leaves no empty output folder


def test_a_0_255_label_needs_binarize_and_then_renders_as_its_0_1_copy(tree_file: Path, tmp_path: Path) -> None:
    bytes_255 = tmp_path / "case_a.nii.gz"
    writing.write_image(bytes_255, _tree_label().astype(np.uint8) * 255, image_io.Geometry((1.0, 1.0, 1.0), (-32.0, -32.0, -100.0)))
    with pytest.raises(DataError, match=r"case_a.nii.gz: the label holds values 255 .*--binarize"):
        phantom_from_label(bytes_255, seed=5)
    plain, binarized = phantom_from_label(tree_file, seed=5), phantom_from_label(bytes_255, seed=5, binarize=True)
    assert np.array_equal(binarized.label, plain.label) and np.array_equal(binarized.ct, plain.ct)
    assert binarized.truth["source_label"]["values"].startswith("binarized")
    assert plain.truth["source_label"]["values"] == "0 and 1"


@pytest.mark.slow
def test_the_cli_writes_a_folder_and_refuses_to_overwrite_it(tree_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "phantoms"
    command = [sys.executable, "-m", "nnunet_airway", "phantoms", "--out", str(out), "--from-label",
               str(tree_file.parent), "--seed", "3"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == ["case_a.nii.gz"]
    truth = json.loads((out / "truth" / "case_a.json").read_text())
    assert truth["case"] == "case_a" and truth["base_seed"] == 3
    before = (out / "images" / "case_a.nii.gz").read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert (out / "images" / "case_a.nii.gz").read_bytes() == before
    stray = subprocess.run([sys.executable, "-m", "nnunet_airway", "phantoms", "--out", str(tmp_path / "x"),
                            "--extend"], capture_output=True, text=True, check=False)
    assert stray.returncode != 0 and "go with --from-label" in stray.stderr
    stray = subprocess.run([sys.executable, "-m", "nnunet_airway", "phantoms", "--out", str(tmp_path / "x"),
                            "--binarize"], capture_output=True, text=True, check=False)
    assert stray.returncode != 0 and "go with --from-label" in stray.stderr


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_TREE.is_file(), reason="the shared ATM'22 trees are not beside the repository")
def test_a_real_shared_tree_renders_parses_and_scores_per_generation(tmp_path: Path) -> None:
    from nnunet_airway.evaluation.metrics import score_case
    from nnunet_airway.evaluation.phantom_truth import bd_by_absolute_generation
    from nnunet_airway.evaluation.reference import parse_reference

    cases = write_label_phantoms([SHARED_TREE], tmp_path / "out", seed=0, spacing_xyz=(1.5, 1.5, 1.5), extend=True)
    assert cases == ["ATM_224_timi"]
    label, geometry = image_io.read_image(tmp_path / "out" / "labels" / "ATM_224_timi.nii.gz")
    ct, _ = image_io.read_image(tmp_path / "out" / "images" / "ATM_224_timi.nii.gz")
    truth = json.loads((tmp_path / "out" / "truth" / "ATM_224_timi.json").read_text())
    assert truth["n_branches"] >= 100 and truth["max_labelled_generation"] >= 8
    assert truth["extension_branches"] and truth["label_resampled"]["to_spacing_xyz"] == [1.5, 1.5, 1.5]
    assert np.median(ct[label > 0]) < -700  # a real tree's many thin branches lose contrast to partial volume
    score = score_case(parse_reference(label > 0, geometry.spacing_zyx, 26), label > 0, geometry.spacing_zyx,
                       connectivity=26)
    per_generation = bd_by_absolute_generation(score, truth)
    assert len(per_generation) >= 8 and all(v == 100.0 for v in per_generation.values())


def test_a_lung_crop_holds_one_main_bronchus_subtree_and_the_source_label_there(tree_file: Path) -> None:
    phantom = phantom_from_label(tree_file, seed=2, crop="lung", shape_zyx=(56, 40, 40))
    crop = phantom.truth["crop"]
    assert crop["kind"] == "lung" and crop["root_generation"] == 1 and phantom.ct.shape == (56, 40, 40)
    z, y, x = crop["box_offset_zyx"]
    source, geometry = image_io.read_image(tree_file)
    assert np.array_equal(phantom.label, source[z:z + 56, y:y + 40, x:x + 40])
    expected_origin = np.asarray(geometry.origin) + np.array([x, y, z]) * 1.0
    assert phantom.geometry.origin == pytest.approx(tuple(expected_origin))
    with pytest.raises(DataError, match="larger than the label's grid"):
        phantom_from_label(tree_file, seed=2, crop="lung", shape_zyx=(96, 40, 40))


def test_the_finer_grid_s_blocks_are_centred_on_the_written_voxels() -> None:
    label = np.zeros((30, 20, 20), bool)
    label[5:25, 8:12, 8:12] = True
    source = image_io.Geometry((0.5, 0.5, 0.5), (-3.0, 4.0, 10.0))
    written_label, written = resampled_label(label, source, (2.0, 2.0, 1.5))
    fine_label, _, fine, factor = _finer_grid(label, None, source, written_label.shape, written, (3, 4, 4))
    assert written_label.shape == (10, 5, 5) and fine_label.shape == (30, 20, 20) and factor == (3, 4, 4)
    assert np.allclose(fine.spacing, (0.5, 0.5, 0.5)) and np.array_equal(fine_label, label)
    coarse = coarser_grid(Grid(fine_label.shape, fine), factor)
    assert coarse.shape == written_label.shape
    assert np.allclose(coarse.origin, written.origin) and np.allclose(coarse.spacing, written.spacing)
