"""The stage lists PhantomExperiment runs (no nnU-Net run: only the names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_airway.demo.pipeline import DemoSettings, PhantomExperiment


@pytest.fixture(autouse=True)
def no_nnunet_folders(monkeypatch) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)


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
