"""``nnunet-airway demo`` end to end on a tiny budget: its outputs, its resume and its clear errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STAGES = ["phantoms", "convert", "plan_and_preprocess", "train", "predict", "evaluate", "attention"]


@pytest.fixture(scope="module")
def finished_demo(tiny_demo) -> tuple[Path, subprocess.CompletedProcess]:
    return tiny_demo


def test_demo_runs_every_stage_and_writes_metrics_pictures_and_a_checkpoint(finished_demo) -> None:
    workdir, result = finished_demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for index, stage in enumerate(STAGES, start=1):
        assert f"[{index}/{len(STAGES)}] {stage}: finished" in result.stdout
    summary = json.loads((workdir / "evaluation" / "nnUNetTrainerAirwayFRAD_Budget" / "summary.json").read_text())
    (case,) = summary["cases"]
    for metric in ("BD", "TD", "TPR", "FPR", "DSC", "precision", "branches_reference"):
        assert metric in summary["cases"][case]
    assert 0.0 <= summary["mean"]["DSC"] <= 100.0
    renders = list((workdir / "evaluation" / "nnUNetTrainerAirwayFRAD_Budget" / "renders").glob("*.png"))
    assert [p.stem for p in renders] == [case]
    meshes = workdir / "evaluation" / "nnUNetTrainerAirwayFRAD_Budget" / "meshes"
    assert sorted(p.name for p in meshes.iterdir()) == [f"{case}.ply", f"{case}_3d.png"]
    attention = workdir / "evaluation" / "nnUNetTrainerAirwayFRAD_Budget" / "attention"
    assert [p.name for p in attention.iterdir()] == [f"{case}.png"]
    assert "3-D meshes" in result.stdout and "attention maps" in result.stdout
    assert list(workdir.glob("nnUNet_results/Dataset990_*/*/fold_0/checkpoint_final.pth"))
    # the demo scores its held-out phantoms itself: nnU-Net's validation of the fold is left out
    assert not list(workdir.glob("nnUNet_results/Dataset990_*/*/fold_0/validation"))
    train = json.loads((workdir / "state.json").read_text())["stages"]["train"]["result"]
    assert train["epochs"] >= 1  # read from the trainer's progress.json
    assert list(workdir.glob("nnUNet_results/Dataset990_*/*/fold_0/progress.json"))
    (debug,) = workdir.glob("nnUNet_results/Dataset990_*/*/fold_0/debug.json")  # nnU-Net's record of the trainer
    assert json.loads(debug.read_text())["num_iterations_per_epoch"] == "2"
    assert "DSC" in result.stdout and "Where everything is:" in result.stdout


def test_second_run_skips_finished_stages_and_redoes_only_an_unfinished_one(finished_demo, demo) -> None:
    workdir, first = finished_demo
    assert first.returncode == 0
    state_path = workdir / "state.json"
    state = json.loads(state_path.read_text())
    del state["stages"][STAGES[-1]]  # as if the run had been interrupted during the last stage
    state_path.write_text(json.dumps(state))
    checkpoint = next(workdir.glob("nnUNet_results/Dataset990_*/*/fold_0/checkpoint_final.pth"))
    trained_at = checkpoint.stat().st_mtime_ns

    result = demo.run(workdir, "--budget-minutes", "0.1", "--iterations-per-epoch", "3")  # budget may change

    assert result.returncode == 0, result.stderr[-3000:]
    for stage in STAGES[:-1]:
        assert f"{stage}: done in an earlier run, skipped" in result.stdout
    assert f"[{len(STAGES)}/{len(STAGES)}] {STAGES[-1]}: finished" in result.stdout
    assert checkpoint.stat().st_mtime_ns == trained_at
    assert json.loads(state_path.read_text())["stages"][STAGES[-1]]["done"]


def test_other_data_settings_in_the_same_workdir_are_refused(finished_demo, demo) -> None:
    workdir, _ = finished_demo
    result = demo.run(workdir, "--seed", "7")
    assert result.returncode == 1
    assert "other settings" in result.stderr and "--workdir" in result.stderr


def test_some_but_not_all_nnunet_folder_variables_set_is_a_clear_error(tmp_path: Path, demo) -> None:
    result = demo.run(tmp_path / "w", env=demo.env(nnUNet_raw=str(tmp_path / "raw")))
    assert result.returncode == 1
    assert "nnUNet_preprocessed, nnUNet_results not set" in result.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv", [["--cases", "1"], ["--budget-minutes", "0"], ["--shape", "32", "64", "64"]])
def test_bad_options_are_usage_errors(tmp_path: Path, argv: list[str], demo) -> None:
    result = subprocess.run(["nnunet-airway", "demo", "--workdir", str(tmp_path), *argv], capture_output=True,
                            text=True, env=demo.env())
    assert result.returncode == 2
