"""``evaluate`` scores nothing it would have to guess at and loses nothing it has scored (issue 14)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation import evaluate_case, evaluate_folder
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]


@pytest.fixture
def y_tree(airway_case: AirwayCase) -> tuple[np.ndarray, Geometry]:
    y, spacing = airway_case("Y")
    return y, Geometry(spacing=spacing[::-1])


def _folders(tmp_path: Path, ref: np.ndarray, preds: dict[str, np.ndarray], geometry: Geometry) -> tuple[Path, Path]:
    pred_dir, ref_dir = tmp_path / "preds", tmp_path / "labels"
    for case, pred in preds.items():
        write_image(ref_dir / f"{case}.nii.gz", ref, geometry)
        write_image(pred_dir / f"{case}.nii.gz", pred, geometry)
    return pred_dir, ref_dir


def _evaluate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_probability_map_is_refused_unless_a_threshold_is_given(tmp_path: Path, y_tree) -> None:
    y, geometry = y_tree
    probability = np.where(y > 0, 0.9, 0.2).astype(np.float32)  # every voxel nonzero: FPR 100 % if read as labels
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": probability}, geometry)
    with pytest.raises(DataError, match=r"a\.nii\.gz: the prediction holds values 0.2, 0.9 .*--threshold T"):
        evaluate_folder(pred_dir, ref_dir, progress=False)
    summary = evaluate_folder(pred_dir, ref_dir, progress=False, threshold=0.5)
    assert summary["cases"]["a"]["DSC"] == 100.0 and summary["cases"]["a"]["FPR"] == 0.0


@pytest.mark.parametrize("value", [2, 255])
def test_label_values_other_than_1_are_refused_unless_binarized(y_tree, value: int) -> None:
    y, _ = y_tree
    with pytest.raises(DataError, match=f"prediction holds values {value} besides 0 and 1.*--binarize"):
        evaluate_case(y * value, y)
    with pytest.raises(DataError, match=f"reference holds values {value} besides 0 and 1.*--binarize"):
        evaluate_case(y, y * value)
    assert evaluate_case(y * value, y * value, binarize=True)["DSC"] == 100.0


def test_negative_values_are_a_one_line_error_and_background_with_binarize(tmp_path: Path, y_tree, capsys) -> None:
    y, geometry = y_tree
    negative = y.astype(np.int16) * -1  # airway drawn as -1: nonzero but never > 0
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": negative, "b": y}, geometry)
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-np", "2")
    assert code == 1 and err.strip().count("\n") == 0 and "values -1 besides 0 and 1" in err
    code, out, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "--binarize", "--overwrite")
    assert code == 0, err
    assert json.loads((pred_dir / "summary_airway.json").read_text())["cases"]["a"]["DSC"] == 0.0


def test_reference_voxels_outside_the_largest_component_are_counted_and_warned(tmp_path: Path, y_tree,
                                                                                capsys) -> None:
    y, geometry = y_tree
    two_trees = y.copy()
    two_trees[0, 0, :3] = 1  # a 3-voxel second component far from the tree
    pred_dir, ref_dir = _folders(tmp_path, two_trees, {"a": y}, geometry)
    summary = evaluate_folder(pred_dir, ref_dir, progress=False)
    assert summary["cases"]["a"]["reference_voxels_outside_largest_component"] == 3
    assert "3 reference voxels lie outside its largest connected component" in capsys.readouterr().err


def test_the_table_says_how_many_cases_each_mean_is_over(tmp_path: Path, airway_case: AirwayCase, capsys) -> None:
    y, spacing = airway_case("Y")
    tube = np.zeros_like(y)
    tube[3:20, 10:14, 22:26] = 1  # a lone trachea: no branch left to score under the paper protocol, BD null
    geometry = Geometry(spacing=spacing[::-1])
    pred_dir, ref_dir = tmp_path / "preds", tmp_path / "labels"
    for case, label in (("tree", y), ("tube", tube)):
        write_image(ref_dir / f"{case}.nii.gz", label, geometry)
        write_image(pred_dir / f"{case}.nii.gz", label, geometry)
    code, out, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir))
    assert code == 0, err
    summary = json.loads((pred_dir / "summary_airway.json").read_text())
    assert summary["n"]["BD"] == 1 and summary["n"]["DSC"] == 2
    assert "Results (%) on 2 cases" in out and "BD over 1, TD over 1" in out and "of 2" in out


@pytest.mark.parametrize("collision", ["same_folder", "out_is_csv", "into_labels", "out_is_prediction", "out_dir"])
def test_colliding_outputs_are_refused_before_scoring(tmp_path: Path, y_tree, capsys, collision: str) -> None:
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y}, geometry)
    args = {"same_folder": ["-p", str(ref_dir), "-r", str(ref_dir)],
            "out_is_csv": ["-o", str(tmp_path / "x"), "--csv", str(tmp_path / "x")],
            "into_labels": ["-o", str(ref_dir / "summary.json")],
            "out_is_prediction": ["-o", str(pred_dir / "a.nii.gz"), "--overwrite"],
            "out_dir": ["-o", str(tmp_path)]}[collision]
    if collision != "same_folder":
        args = ["-p", str(pred_dir), "-r", str(ref_dir), *args]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = _evaluate(capsys, *args)
    assert code == 1 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_output_that_cannot_be_written_fails_in_one_line_before_scoring(tmp_path: Path, y_tree, capsys) -> None:
    # tests run as root, who may write anywhere: a path running through a regular file cannot be written by anyone
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y}, geometry)
    (tmp_path / "plain").write_text("x")
    code, out, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o",
                               str(tmp_path / "plain" / "summary.json"))
    assert code == 1 and err.strip().count("\n") == 0 and "plain" in err and "Traceback" not in err
    assert "Results" not in out


def test_cases_scored_before_a_failure_are_kept(tmp_path: Path, y_tree, capsys) -> None:
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y, "b": y * 2}, geometry)  # b fails after a is scored
    out, table = tmp_path / "s.json", tmp_path / "s.csv"
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(out), "--csv", str(table))
    assert code == 1 and "b.nii.gz" in err
    # -o and --csv are written only when the run is complete; the cases so far are in a file of their own
    assert not out.exists() and not table.exists()
    partial = json.loads((tmp_path / "s.partial.json").read_text())
    assert list(partial["cases"]) == ["a"] and "incomplete" in partial
    assert "s.partial.json" in err


def test_a_failed_overwrite_keeps_the_earlier_results(tmp_path: Path, y_tree, capsys) -> None:
    """A good summary, then one prediction broken and the same -o --csv with --overwrite: the run fails and the
    earlier JSON and CSV are still there, unchanged."""
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y, "b": y}, geometry)
    out, table = tmp_path / "good.json", tmp_path / "good.csv"
    assert _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(out), "--csv", str(table))[0] == 0
    before = out.read_bytes(), table.read_bytes()
    write_image(pred_dir / "b.nii.gz", (y * 255).astype(np.uint8), geometry)
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(out), "--csv", str(table),
                             "--overwrite")
    assert code == 1 and "b.nii.gz" in err
    assert (out.read_bytes(), table.read_bytes()) == before
    # and a rerun that succeeds replaces them
    write_image(pred_dir / "b.nii.gz", y, geometry)
    assert _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(out), "--csv", str(table),
                     "--overwrite")[0] == 0
    assert not (tmp_path / "good.partial.json").exists()


def test_a_failure_before_any_case_leaves_no_output(tmp_path: Path, y_tree, capsys) -> None:
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y * 2}, geometry)
    code, _, _ = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(tmp_path / "s.json"))
    assert code == 1 and not (tmp_path / "s.json").exists()


def test_a_truncated_prediction_is_refused(tmp_path: Path, y_tree, capsys) -> None:
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y}, geometry)
    data = (pred_dir / "a.nii.gz").read_bytes()
    (pred_dir / "a.nii.gz").write_bytes(data[: len(data) // 2])
    code, out, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir))
    assert code == 1 and "a.nii.gz: " in err and ("cut short" in err or "damaged" in err)


def test_a_vector_prediction_is_a_one_line_error_naming_the_file(tmp_path: Path, y_tree, capsys) -> None:
    """It said "zip() argument 2 is longer than argument 1"."""
    import SimpleITK as sitk

    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y}, geometry)
    vector = sitk.GetImageFromArray(np.stack([y, y], axis=-1).astype(np.uint8), isVector=True)
    sitk.WriteImage(vector, str(pred_dir / "a.nii.gz"))
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(tmp_path / "s.json"))
    assert code == 1 and "a.nii.gz: a 3-D image" in err and "2 components per voxel" in err and "zip()" not in err


def test_the_partial_summary_never_takes_a_users_file(tmp_path: Path, y_tree, capsys) -> None:
    y, geometry = y_tree
    pred_dir, ref_dir = _folders(tmp_path, y, {"a": y}, geometry)
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(tmp_path / "r.json"),
                             "--csv", str(tmp_path / "r.partial.json"))
    assert code == 1 and "given to both --csv and the partial summary of -o" in err
    (tmp_path / "r.partial.json").write_text("the user's notes")
    code, _, err = _evaluate(capsys, "-p", str(pred_dir), "-r", str(ref_dir), "-o", str(tmp_path / "r.json"))
    assert code == 1 and "r.partial.json: exists" in err
    assert (tmp_path / "r.partial.json").read_text() == "the user's notes"
