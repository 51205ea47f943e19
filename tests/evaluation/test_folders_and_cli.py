"""Folder evaluation and the ``nnunet-airway evaluate`` command on real NIfTI files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main as cli_main
from nnunet_airway.errors import DataError
from nnunet_airway.evaluation import evaluate_case, evaluate_folder
from nnunet_airway.image_io import Geometry, read_image
from nnunet_airway.writing import write_image

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]
SCHEMA_CASE_KEYS = {"BD", "TD", "TD_mm", "TPR", "FPR", "DSC", "precision", "clDice", "branches_reference",
                    "branches_detected", "BD_by_generation"}


def _geometry(spacing_zyx: tuple[float, float, float]) -> Geometry:
    return Geometry(spacing=spacing_zyx[::-1], origin=(-10.0, 5.0, 30.0))


@pytest.fixture
def folders(tmp_path: Path, airway_case: AirwayCase) -> tuple[Path, Path]:
    """labels/ with two cases; preds/ with a perfect and a half-missing prediction."""
    ref_dir, pred_dir = tmp_path / "labels", tmp_path / "preds"
    y, spacing = airway_case("Y")
    tree, tree_spacing = airway_case("anisotropic spacing")
    cut = y.copy()
    cut[:, :, 28:] = 0
    write_image(ref_dir / "airway_001.nii.gz", y, _geometry(spacing))
    write_image(pred_dir / "airway_001.nii.gz", cut, _geometry(spacing))
    write_image(ref_dir / "airway_002.nii.gz", tree, _geometry(tree_spacing))
    write_image(pred_dir / "airway_002.nii.gz", tree, _geometry(tree_spacing))
    (pred_dir / "plans.json").write_text("{}")  # nnU-Net writes such files beside predictions
    return pred_dir, ref_dir


def test_folder_summary_follows_the_schema(folders: tuple[Path, Path]) -> None:
    pred_dir, ref_dir = folders
    summary = evaluate_folder(pred_dir, ref_dir, progress=False)
    assert list(summary) == ["protocol", "definitions", "cases", "mean", "std", "n"]
    assert summary["protocol"] == "paper"
    assert list(summary["cases"]) == ["airway_001", "airway_002"]
    for metrics in summary["cases"].values():
        assert SCHEMA_CASE_KEYS <= set(metrics)
        assert "loops_broken" in metrics
    assert summary["cases"]["airway_001"]["BD"] == 50.0
    assert summary["cases"]["airway_002"]["BD"] == 100.0
    assert summary["mean"]["BD"] == 75.0 and summary["std"]["BD"] == 25.0
    assert {"BD", "TD", "TPR", "FPR", "DSC", "trachea", "loops"} <= set(summary["definitions"])
    json.dumps(summary, allow_nan=False)  # plain JSON, no NaN


def test_files_give_the_same_numbers_as_arrays(folders: tuple[Path, Path], airway_case: AirwayCase) -> None:
    pred_dir, ref_dir = folders
    tree, spacing = airway_case("anisotropic spacing")
    from_files = evaluate_case(pred_dir / "airway_002.nii.gz", ref_dir / "airway_002.nii.gz", protocol="atm22")
    from_arrays = evaluate_case(tree, tree, spacing=spacing, protocol="atm22")
    assert from_files.keys() == from_arrays.keys()
    for name, value in from_arrays.items():  # NIfTI stores the spacing as float32
        assert from_files[name] == (value if isinstance(value, dict) else pytest.approx(value, rel=1e-6)), name


def test_parallel_processes_give_the_same_summary(folders: tuple[Path, Path]) -> None:
    pred_dir, ref_dir = folders
    assert evaluate_folder(pred_dir, ref_dir, num_processes=2, progress=False) == \
        evaluate_folder(pred_dir, ref_dir, num_processes=1, progress=False)


def test_grid_mismatch_names_both_files(folders: tuple[Path, Path], airway_case: AirwayCase) -> None:
    pred_dir, ref_dir = folders
    y, spacing = airway_case("Y")
    write_image(pred_dir / "airway_001.nii.gz", y, Geometry(spacing=(0.5, 0.5, 1.0), origin=(-10.0, 5.0, 30.0)))
    with pytest.raises(DataError) as error:
        evaluate_folder(pred_dir, ref_dir, progress=False)
    message = str(error.value)
    assert str(pred_dir / "airway_001.nii.gz") in message and str(ref_dir / "airway_001.nii.gz") in message
    assert "spacing" in message


def test_missing_case_is_an_error_unless_allowed(folders: tuple[Path, Path]) -> None:
    pred_dir, ref_dir = folders
    (pred_dir / "airway_002.nii.gz").unlink()
    with pytest.raises(DataError, match="airway_002.*--allow-missing"):
        evaluate_folder(pred_dir, ref_dir, progress=False)
    summary = evaluate_folder(pred_dir, ref_dir, allow_missing=True, progress=False)
    assert list(summary["cases"]) == ["airway_001"]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nnunet-airway", "evaluate", *argv], capture_output=True, text=True)


@pytest.mark.slow
def test_command_end_to_end(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, ref_dir = folders
    out, table, pictures = tmp_path / "summary.json", tmp_path / "per_case.csv", tmp_path / "render"
    args = ["-p", str(pred_dir), "-r", str(ref_dir), "-o", str(out), "--csv", str(table), "-np", "2",
            "--protocol", "atm22", "--render", str(pictures), "--no-progress"]
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["protocol"] == "atm22"
    assert summary["cases"]["airway_001"]["branches_reference"] == 3
    header = next(line for line in result.stdout.splitlines() if line.startswith("Method"))
    assert header.split() == ["Method", "BD", "TD", "TPR", "FPR", "DSC"]
    assert "preds" in result.stdout and "83.3" in result.stdout  # mean BD of 66.7 and 100
    rows = table.read_text().splitlines()
    assert rows[0].startswith("case,BD,TD") and len(rows) == 3
    assert sorted(p.name for p in pictures.iterdir()) == ["airway_001.png", "airway_002.png"]
    assert (pictures / "airway_001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = _run(*args)  # nothing is overwritten without --overwrite
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert _run(*args[:8], "--no-progress", "--overwrite").returncode == 0


@pytest.mark.slow
def test_command_reports_missing_cases(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred_dir, ref_dir = folders
    (pred_dir / "airway_001.nii.gz").unlink()
    result = _run("-p", str(pred_dir), "-r", str(ref_dir), "-o", str(tmp_path / "s.json"), "--no-progress")
    assert result.returncode == 1
    assert "airway_001" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- BD per absolute generation from phantom truth sidecars (--truth) ---

@pytest.fixture
def truth_folders(tmp_path: Path, truth_tree) -> tuple[Path, Path, Path]:
    """preds/, labels/ and truth/ of one hand-made crop-like case (conftest's truth_tree)."""
    truth, label, prediction = truth_tree
    geometry = Geometry(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    write_image(tmp_path / "labels" / "crop_000.nii.gz", label, geometry)
    write_image(tmp_path / "preds" / "crop_000.nii.gz", prediction, geometry)
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "crop_000.json").write_text(json.dumps(truth))
    return tmp_path / "preds", tmp_path / "labels", tmp_path / "truth"


def test_truth_folder_adds_bd_per_absolute_generation(tmp_path: Path, truth_folders) -> None:
    preds, labels, truth = truth_folders
    summary = evaluate_folder(preds, labels, progress=False, truth_dir=truth)
    case = summary["cases"]["crop_000"]
    # counted from the root the children are generation 1; the sidecar says 4
    assert case["BD_by_generation"] == {"1": 50.0}
    assert case["BD_by_absolute_generation"] == {"4": 50.0}
    assert summary["mean"]["BD_by_absolute_generation"] == {"4": 50.0}
    assert summary["n"]["BD_by_absolute_generation"] == {"4": 1}
    assert "BD_by_absolute_generation" not in evaluate_folder(preds, labels, progress=False)["mean"]


def test_truth_folder_without_a_case_is_a_clear_error(tmp_path: Path, truth_folders) -> None:
    preds, labels, truth = truth_folders
    (truth / "crop_000.json").unlink()
    with pytest.raises(DataError, match="no truth sidecar for 1 case.*crop_000.*truth/ folder"):
        evaluate_folder(preds, labels, progress=False, truth_dir=truth)


def test_command_with_truth_writes_absolute_generation_columns(tmp_path: Path, truth_folders) -> None:
    preds, labels, truth = truth_folders
    out, table = tmp_path / "s.json", tmp_path / "s.csv"
    assert cli_main(["evaluate", "-p", str(preds), "-r", str(labels), "--truth", str(truth), "-o", str(out),
                     "--csv", str(table), "--no-progress"]) == 0
    header, row = table.read_text().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["BD_gen1"] == values["BD_absgen4"] == "50.0"
    assert json.loads(out.read_text())["cases"]["crop_000"]["BD_by_absolute_generation"] == {"4": 50.0}


def test_truth_of_other_phantoms_is_refused(tmp_path: Path, truth_folders) -> None:
    preds, labels, truth = truth_folders
    sidecar = json.loads((truth / "crop_000.json").read_text())
    (truth / "crop_000.json").write_text(json.dumps({**sidecar, "shape_zyx": [64, 64, 64]}))
    with pytest.raises(DataError, match=r"crop_000.json: describes a \(64, 64, 64\) phantom but .*crop_000.nii.gz "
                                        r"is \(21, 41, 50\)"):
        evaluate_folder(preds, labels, progress=False, truth_dir=truth)


def test_truth_of_another_label_on_the_same_grid_is_refused(tmp_path: Path, truth_folders) -> None:
    """Same shape, another airway: the voxel count the sidecar records tells them apart."""
    preds, labels, truth = truth_folders
    voxels = int((read_image(labels / "crop_000.nii.gz")[0] > 0).sum())
    sidecar = json.loads((truth / "crop_000.json").read_text())
    (truth / "crop_000.json").write_text(json.dumps({**sidecar, "label_voxels": voxels}))
    assert "crop_000" in evaluate_folder(preds, labels, progress=False, truth_dir=truth)["cases"]
    (truth / "crop_000.json").write_text(json.dumps({**sidecar, "label_voxels": voxels + 7}))
    with pytest.raises(DataError, match=rf"crop_000.json: describes a label of {voxels + 7} airway voxels but "
                                        rf".*crop_000.nii.gz has {voxels}"):
        evaluate_folder(preds, labels, progress=False, truth_dir=truth)


def test_a_sidecar_without_the_needed_keys_is_refused_before_scoring(tmp_path: Path, truth_folders) -> None:
    preds, labels, truth = truth_folders
    (truth / "crop_000.json").write_text(json.dumps({"branches": [{"id": 1}], "origin_xyz": [0, 0, 0],
                                                      "spacing_xyz": [1, 1, 1], "shape_zyx": [21, 41, 50]}))
    with pytest.raises(DataError, match="not a phantom truth sidecar .no end_mm, generation, labelled, start_mm"):
        evaluate_folder(preds, labels, progress=False, truth_dir=truth)
    with pytest.raises(DataError, match="no such folder"):
        evaluate_folder(preds, labels, progress=False, truth_dir=tmp_path / "nowhere")


@pytest.mark.parametrize("flag", ["-o", "--csv", "--mesh", "--render"])
def test_outputs_into_the_truth_or_reference_folders_are_refused_and_nothing_is_lost(tmp_path: Path, truth_folders,
                                                                                      capsys, flag: str) -> None:
    """``-o T/truth/phantom_000.json --truth T/truth --overwrite`` deleted the sidecar; --mesh into the reference
    folder was accepted."""
    preds, labels, truth = truth_folders
    sidecar = (truth / "crop_000.json").read_bytes()
    for target in (truth / "crop_000.json", labels / "out"):
        argv = ["evaluate", "-p", str(preds), "-r", str(labels), "--truth", str(truth), "--overwrite", "--no-progress",
                flag, str(target)]
        assert cli_main(argv) == 1
        err = capsys.readouterr().err
        assert f"{flag} would write" in err and ("truth folder" in err or "reference folder" in err)
    assert (truth / "crop_000.json").read_bytes() == sidecar
    assert sorted(p.name for p in labels.iterdir()) == ["crop_000.nii.gz"]
