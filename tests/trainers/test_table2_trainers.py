"""The Table 2 budget trainers of the thin-branch benchmark: every one found by name, nnU-Net's own default
trainer on the budget (builds, trains a step, trains and predicts through the nnU-Net commands)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_airway.image_io import read_image
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.budget import (
    EPOCHS_VARIABLE,
    ITERATIONS_VARIABLE,
    KEEP_CHECKPOINTS_VARIABLE,
    SKIP_VALIDATION_VARIABLE,
    TIME_BUDGET_VARIABLE,
    TrainingBudgetMixin,
)
from nnunet_airway.trainers.declarations import budget_names

from .test_trainer_variants import make_trainer

pytestmark = pytest.mark.slow

# the budget names the benchmarks and users' scripts already carry, with their settings (recalibration,
# distillation weight, reduction; None: nnU-Net's own trainer); new declarations are checked from budget_names()
EXISTING_BUDGET_TRAINERS = {
    "nnUNetTrainer_Budget": None,
    "nnUNetTrainerAirwayBaseline_Budget": (None, 0.0, "sum"),
    "nnUNetTrainerAirwayCSE_Budget": ("cse", 0.0, "sum"),
    "nnUNetTrainerAirwayPE_Budget": ("pe", 0.0, "sum"),
    "nnUNetTrainerAirwayFR_Budget": ("fr", 0.0, "sum"),
    "nnUNetTrainerAirwayAD_Budget": (None, 0.1, "sum"),
    "nnUNetTrainerAirwayFRAD_Budget": ("fr", 0.1, "sum"),
    "nnUNetTrainerAirwayAD_mean_Budget": (None, 0.1, "mean"),
    "nnUNetTrainerAirwayAD_w001_Budget": (None, 0.01, "sum"),
    "nnUNetTrainerAirwayAD_mean_w001_Budget": (None, 0.01, "mean"),
}


@pytest.fixture()
def epoch_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIME_BUDGET_VARIABLE, raising=False)
    monkeypatch.setenv(EPOCHS_VARIABLE, "1")
    monkeypatch.setenv(ITERATIONS_VARIABLE, "2")


def test_every_budget_trainer_is_found_by_name_with_its_settings(fresh_results) -> None:
    assert set(EXISTING_BUDGET_TRAINERS) <= set(budget_names())
    for name in budget_names():
        cls = recursive_find_trainer_class_by_name(name)
        assert cls.__name__ == name and cls.__module__ == "nnunet_airway.trainers.budget"
        assert issubclass(cls, TrainingBudgetMixin) and pickle.loads(pickle.dumps(cls)) is cls
        expected = EXISTING_BUDGET_TRAINERS.get(name)
        if expected is not None:
            assert (cls.recalibration, cls.distillation_weight, cls.distillation_reduction) == expected


def test_nnunet_default_on_the_budget_builds_and_steps(phantom_dataset, fresh_results, epoch_budget) -> None:
    trainer = make_trainer("nnUNetTrainer_Budget", phantom_dataset)
    trainer.initialize()
    # nnU-Net's network from the plans and its Dice + CE loss with deep supervision; the budget's optimiser
    assert type(trainer.network).__name__ == trainer.configuration_manager.network_arch_class_name.split(".")[-1]
    assert not isinstance(trainer.network, FRADUNet)
    assert isinstance(trainer.loss, DeepSupervisionWrapper) and isinstance(trainer.loss.loss, DC_and_CE_loss)
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (1, 2)
    assert trainer.inference_allowed_mirroring_axes is None

    batch = next(trainer.get_dataloaders()[0])
    before = [p.detach().clone() for p in trainer.network.parameters()]
    trainer.network.train()
    assert math.isfinite(float(trainer.train_step(batch)["loss"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters(), strict=True))


def test_nnunet_default_on_the_budget_trains_keeps_checkpoints_and_predicts(phantom_dataset, tmp_path) -> None:
    env = phantom_dataset.env(nnUNet_results=str(tmp_path / "results"), **{EPOCHS_VARIABLE: "2",
                              ITERATIONS_VARIABLE: "1", SKIP_VALIDATION_VARIABLE: "1", KEEP_CHECKPOINTS_VARIABLE: "1,2"})
    env.pop(TIME_BUDGET_VARIABLE, None)
    trained = phantom_dataset.run(*phantom_dataset.train_argv("nnUNetTrainer_Budget"), env=env)
    (fold,) = (tmp_path / "results").glob("*/nnUNetTrainer_Budget__*/fold_0")
    assert (fold / "checkpoint_final.pth").is_file()
    assert "final validation left out" in trained.stdout and not (fold / "validation").exists()
    # the weights after the first and after the second (last) iteration, kept for nnUNetv2_predict -chk
    first, last, final = (torch.load(fold / name, map_location="cpu", weights_only=False)["network_weights"]
                          for name in ("checkpoint_iter_1.pth", "checkpoint_iter_2.pth", "checkpoint_final.pth"))
    assert all(torch.equal(last[key], final[key]) for key in final)
    assert any(not torch.equal(first[key], final[key]) for key in final)
    assert not list(fold.glob("*.partial"))
    out = tmp_path / "predictions"
    phantom_dataset.run(*phantom_dataset.predict_argv("nnUNetTrainer_Budget", phantom_dataset.raw / "imagesTs",
                                                      out), "-chk", "checkpoint_iter_1.pth", env=env)
    for case in phantom_dataset.test_cases:
        prediction, _ = read_image(out / f"{case}.nii.gz")
        assert prediction.shape == phantom_dataset.shape_zyx
        assert set(prediction.ravel().tolist()) <= {0, 1}
