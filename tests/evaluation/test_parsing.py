"""The reference skeleton and parsing volumes (evaluation/parsing.py), ``nnunet-airway parse``, and the ATM'26
protocol of ``evaluate`` with computed and given parsings, on hand-built trees written as real NIfTI files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main as cli_main
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation import evaluate_case, evaluate_folder
from nnunet_airway.evaluation.atm26 import ATM26_KEYS, check_skeleton_and_parsing
from nnunet_airway.evaluation.parsing import parse_label
from nnunet_airway.image_io import Geometry, read_image
from nnunet_airway.writing import write_image

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]


def _geometry(spacing_zyx: tuple[float, float, float]) -> Geometry:
    return Geometry(spacing=spacing_zyx[::-1], origin=(-10.0, 5.0, 30.0))


@pytest.mark.parametrize("name", ["Y", "three generations", "loop", "spurs", "anisotropic spacing"])
def test_the_parsing_labels_exactly_the_skeleton_one_id_per_parsed_branch(airway_case: AirwayCase, name: str) -> None:
    label, spacing = airway_case(name)
    skeleton, parsing = parse_label(label, spacing)
    check_skeleton_and_parsing(skeleton, parsing)  # IDs 1..N, every skeleton voxel labelled, nothing outside
    assert skeleton.dtype == np.uint8 and parsing.dtype == np.uint8  # a small tree: IDs up to 255
    assert np.array_equal(skeleton > 0, parsing > 0)
    assert np.all(label[skeleton > 0] > 0)  # the centreline lies inside the airway
    # one ID per branch of the same parse the atm22 protocol counts (trachea included there)
    assert int(parsing.max()) == evaluate_case(label, label, spacing=spacing, protocol="atm22")["branches_reference"]


def test_the_trachea_is_branch_one_and_a_y_has_three_branches(airway_case: AirwayCase) -> None:
    label, spacing = airway_case("Y")
    skeleton, parsing = parse_label(label, spacing)
    assert int(parsing.max()) == 3
    trachea_slices = np.unique(np.nonzero(parsing == 1)[0])
    assert trachea_slices.min() < 10  # the Y's trachea enters at the low z end (conftest.Y_SEGMENTS)
    sizes = np.bincount(parsing[skeleton > 0])[1:]
    assert np.all(sizes > 0)


def test_labels_without_a_branch_are_refused_naming_them() -> None:
    with pytest.raises(DataError, match="case_7.*no airway"):
        parse_label(np.zeros((8, 8, 8), np.uint8), (1.0, 1.0, 1.0), "case_7")
    dot = np.zeros((8, 8, 8), np.uint8)
    dot[3:5, 3:5, 3:5] = 1
    with pytest.raises(DataError, match="case_8.*too small"):
        parse_label(dot, (1.0, 1.0, 1.0), "case_8")


def test_atm26_case_scores_a_perfect_and_a_fragmented_prediction(airway_case: AirwayCase) -> None:
    label, spacing = airway_case("Y")
    perfect = evaluate_case(label, label, spacing=spacing, protocol="atm26")
    assert list(perfect) == list(ATM26_KEYS)
    assert perfect["DSC"] == pytest.approx(100.0) and perfect["TLD"] == 100.0 and perfect["BD"] == 100.0
    assert perfect["Betti0Error"] == 0 and perfect["branch_total"] == perfect["branch_detected"] == 3
    fragments = label.copy()
    fragments[0, 0, 0] = fragments[0, 0, 47] = 1  # two single voxels away from the tree
    scores = evaluate_case(fragments, label, spacing=spacing, protocol="atm26")
    assert scores["Betti0Error"] == 2 and scores["TLD"] == 100.0 and scores["BD"] == 100.0
    assert scores["DSC"] < 100.0


def test_a_given_parsing_gives_the_same_scores_as_the_computed_one(airway_case: AirwayCase) -> None:
    label, spacing = airway_case("Y")
    cut = label.copy()
    cut[:, :, 28:] = 0
    skeleton, parsing = parse_label(label, spacing)
    given = evaluate_case(cut, label, spacing=spacing, protocol="atm26", skeleton=skeleton, parsing=parsing)
    assert given == evaluate_case(cut, label, spacing=spacing, protocol="atm26")
    assert given["branch_detected"] < given["branch_total"] == 3
    with pytest.raises(ValueError, match="both"):
        evaluate_case(cut, label, spacing=spacing, protocol="atm26", skeleton=skeleton)
    with pytest.raises(ValueError, match="atm26 only"):
        evaluate_case(cut, label, spacing=spacing, protocol="atm22", skeleton=skeleton, parsing=parsing)
    with pytest.raises(ValueError, match="26-connected"):
        evaluate_case(cut, label, spacing=spacing, protocol="atm26", connectivity=6)


@pytest.fixture
def atm26_folders(tmp_path: Path, airway_case: AirwayCase) -> tuple[Path, Path]:
    """labels/ and preds/ with two cases: a Y (half cut in the prediction) and a tree (perfect)."""
    ref_dir, pred_dir = tmp_path / "labels", tmp_path / "preds"
    y, spacing = airway_case("Y")
    tree, tree_spacing = airway_case("three generations")
    cut = y.copy()
    cut[:, :, 28:] = 0
    write_image(ref_dir / "airway_001.nii.gz", y, _geometry(spacing))
    write_image(pred_dir / "airway_001.nii.gz", cut, _geometry(spacing))
    write_image(ref_dir / "airway_002.nii.gz", tree, _geometry(tree_spacing))
    write_image(pred_dir / "airway_002.nii.gz", tree, _geometry(tree_spacing))
    return pred_dir, ref_dir


def test_parse_writes_both_volumes_on_the_label_grid_and_evaluate_reads_them(
        atm26_folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = atm26_folders
    out = tmp_path / "parsing"
    assert cli_main(["parse", "-i", str(ref_dir), "-o", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["airway_001_parsing.nii.gz", "airway_001_skeleton.nii.gz",
                                                     "airway_002_parsing.nii.gz", "airway_002_skeleton.nii.gz"]
    label, label_geometry = read_image(ref_dir / "airway_001.nii.gz")
    parsing, parsing_geometry = read_image(out / "airway_001_parsing.nii.gz")
    skeleton, _ = read_image(out / "airway_001_skeleton.nii.gz")
    assert parsing_geometry == label_geometry and parsing.shape == label.shape
    expected_skeleton, expected_parsing = parse_label(label > 0, label_geometry.spacing_zyx)
    assert np.array_equal(parsing, expected_parsing) and np.array_equal(skeleton, expected_skeleton)
    assert "airway_001: 3 branches" in capsys.readouterr().out

    given = evaluate_folder(pred_dir, ref_dir, protocol="atm26", parsing_dir=out, progress=False)
    computed = evaluate_folder(pred_dir, ref_dir, protocol="atm26", progress=False)
    assert given["cases"] == computed["cases"]
    assert given["protocol"] == "atm26" and set(given["mean"]) == set(ATM26_KEYS)
    assert given["cases"]["airway_002"]["BD"] == 100.0 and given["cases"]["airway_001"]["BD"] < 100.0
    assert given["mean"]["BD"] == pytest.approx((100.0 + given["cases"]["airway_001"]["BD"]) / 2)
    assert {"TLD", "Betti0Error", "sources"} <= set(given["definitions"])

    # an existing output is kept unless --overwrite
    before = (out / "airway_001_parsing.nii.gz").read_bytes()
    assert cli_main(["parse", "-i", str(ref_dir), "-o", str(out), "--no-progress"]) == 1
    assert (out / "airway_001_parsing.nii.gz").read_bytes() == before
    assert cli_main(["parse", "-i", str(ref_dir), "-o", str(out), "--no-progress", "--overwrite"]) == 0


def test_parse_refuses_an_output_inside_the_labels(atm26_folders: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture) -> None:
    _, ref_dir = atm26_folders
    assert cli_main(["parse", "-i", str(ref_dir), "-o", str(ref_dir / "parsing"), "--no-progress"]) == 1
    assert "label folder" in capsys.readouterr().err
    assert not (ref_dir / "parsing").exists()


def _evaluate(pred_dir: Path, ref_dir: Path, *extra: str) -> int:
    return cli_main(["evaluate", "-p", str(pred_dir), "-r", str(ref_dir), "--protocol", "atm26", "--no-progress",
                     *extra])


def test_evaluate_atm26_prints_the_leaderboard_columns(atm26_folders: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = atm26_folders
    summary_path, csv_path = tmp_path / "s.json", tmp_path / "s.csv"
    assert _evaluate(pred_dir, ref_dir, "-o", str(summary_path), "--csv", str(csv_path)) == 0
    printed = capsys.readouterr().out
    assert "ATM'26" in printed and all(title in printed for title in ("DSC", "clDice", "TLD", "BD", "Betti-0 error"))
    summary = json.loads(summary_path.read_text())
    assert summary["protocol"] == "atm26" and summary["cases"]["airway_002"]["TLD"] == 100.0
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header == ["case", *ATM26_KEYS]


@pytest.mark.parametrize(("extra", "message"), [
    (("--table", "atm22"), "--table atm22"),
    (("--connectivity", "6"), "26-connected"),
    (("--render", "pictures"), "--render works with --protocol paper or atm22"),
])
def test_evaluate_atm26_refuses_options_of_the_other_protocols(atm26_folders: tuple[Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture, extra: tuple,
                                                               message: str) -> None:
    pred_dir, ref_dir = atm26_folders
    extra = tuple(str(tmp_path / e) if e == "pictures" else e for e in extra)
    assert _evaluate(pred_dir, ref_dir, *extra) == 1
    assert message in capsys.readouterr().err


def test_parsing_is_refused_with_the_tree_protocols(atm26_folders: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = atm26_folders
    (tmp_path / "parsing").mkdir()
    assert cli_main(["evaluate", "-p", str(pred_dir), "-r", str(ref_dir), "--parsing", str(tmp_path / "parsing"),
                     "--no-progress"]) == 1
    assert "atm26 only" in capsys.readouterr().err


def _parsed(ref_dir: Path, out: Path) -> None:
    assert cli_main(["parse", "-i", str(ref_dir), "-o", str(out), "--no-progress"]) == 0


def test_given_files_that_break_the_rules_or_the_grid_are_refused_naming_the_file(
        atm26_folders: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pred_dir, ref_dir = atm26_folders
    out = tmp_path / "parsing"
    _parsed(ref_dir, out)
    capsys.readouterr()
    parsing_path = out / "airway_001_parsing.nii.gz"
    parsing, geometry = read_image(parsing_path)
    write_image(parsing_path, np.where(parsing == 2, 4, parsing).astype(np.int32), geometry)  # IDs 1, 3, 4
    assert _evaluate(pred_dir, ref_dir, "--parsing", str(out)) == 1
    err = capsys.readouterr().err
    assert str(parsing_path) in err and "without gaps" in err

    shifted = Geometry(spacing=geometry.spacing, origin=tuple(o + 5.0 for o in geometry.origin),
                       direction=geometry.direction)
    write_image(parsing_path, parsing, shifted)
    assert _evaluate(pred_dir, ref_dir, "--parsing", str(out)) == 1
    err = capsys.readouterr().err
    assert str(parsing_path) in err and "origin" in err

    parsing_path.unlink()
    assert _evaluate(pred_dir, ref_dir, "--parsing", str(out)) == 1
    assert "airway_001_parsing.nii.gz" in capsys.readouterr().err


def test_the_parsing_takes_the_smallest_unsigned_type_of_its_ids() -> None:
    from nnunet_airway.evaluation.parsing import parsing_dtype

    assert [parsing_dtype(n) for n in (0, 255, 256, 65535, 65536)] == [np.uint8, np.uint8, np.uint16, np.uint16,
                                                                        np.uint32]
    with pytest.raises(ValueError, match="uint32"):
        parsing_dtype(2**32)
