"""The stage lists PhantomExperiment runs (no nnU-Net run: only the names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_airway.demo.pipeline import DemoSettings, PhantomExperiment, predict_worker_arguments, worker_processes

pytestmark = pytest.mark.usefixtures("no_nnunet_folders")


def stage_names(tmp_path: Path, **options) -> list[str]:
    experiment = PhantomExperiment(tmp_path, DemoSettings(), "cpu", ("A", "B"), **options)
    return [stage.name for stage in experiment.stages()]


def test_every_trainer_gets_train_predict_evaluate_and_attention(tmp_path: Path) -> None:
    assert stage_names(tmp_path) == ["phantoms", "convert", "plan_and_preprocess",
                                     "train A", "predict A", "evaluate A", "attention A",
                                     "train B", "predict B", "evaluate B", "attention B"]


def test_attention_maps_false_leaves_the_attention_stages_out(tmp_path: Path) -> None:
    assert stage_names(tmp_path, attention_maps=False) == [
        "phantoms", "convert", "plan_and_preprocess", "train A", "predict A", "evaluate A",
        "train B", "predict B", "evaluate B"]


def test_worker_processes_are_one_per_case_at_most_one_per_cpu_and_eight(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [worker_processes(n) for n in (0, 1, 2, 8)] == [1, 1, 2, 2]
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    assert [worker_processes(n) for n in (3, 24)] == [3, 8]


def test_prediction_starts_no_background_workers_on_a_cpu() -> None:
    assert predict_worker_arguments("cpu") == ["-npp", "0", "-nps", "0"]
    assert predict_worker_arguments("cuda") == ["-npp", "1", "-nps", "1"]


def test_one_trainer_keeps_the_bare_stage_names_and_stage_name_says_so(tmp_path: Path) -> None:
    experiment = PhantomExperiment(tmp_path, DemoSettings(), "cpu", ("A",), attention_maps=False)
    assert [stage.name for stage in experiment.stages()][3:] == ["train", "predict", "evaluate"]
    assert experiment.stage_name("evaluate", "A") == "evaluate"
    two = PhantomExperiment(tmp_path, DemoSettings(), "cpu", ("A", "B"))
    assert two.stage_name("evaluate", "B") == "evaluate B"


def test_iterations_per_epoch_reach_every_budget_unless_the_budget_names_them(tmp_path: Path) -> None:
    settings = DemoSettings(budget_minutes=2.0, iterations_per_epoch=3)
    assert PhantomExperiment(tmp_path, settings, "cpu").budget == {
        "NNUNET_AIRWAY_TIME_BUDGET_S": "120.0", "NNUNET_AIRWAY_ITERATIONS_PER_EPOCH": "3"}
    by_epochs = PhantomExperiment(tmp_path, settings, "cpu", budget={"NNUNET_AIRWAY_EPOCHS": "5"})
    assert by_epochs.budget == {"NNUNET_AIRWAY_EPOCHS": "5", "NNUNET_AIRWAY_ITERATIONS_PER_EPOCH": "3"}
    named = PhantomExperiment(tmp_path, settings, "cpu", budget={"NNUNET_AIRWAY_EPOCHS": "5",
                                                                 "NNUNET_AIRWAY_ITERATIONS_PER_EPOCH": "7"})
    assert named.budget["NNUNET_AIRWAY_ITERATIONS_PER_EPOCH"] == "7"
