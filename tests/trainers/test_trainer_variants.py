"""Every trainer a user can name: found by nnU-Net's lookup, builds from the plans, takes a training step on a
real batch, and its weights load strictly into the network nnUNetv2_predict builds (deep supervision off)."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite
from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.declarations import BY_NAME, DECLARATIONS
from nnunet_airway.trainers.network import FOREGROUND_PRIOR

pytestmark = pytest.mark.slow

RECALIBRATION_TYPES = {"fr": FeatureRecalibration, "pe": ProjectExcite, "cse": ChannelSE, None: None}

# the names users and checkpoints already carry, with their settings: they must keep meaning the same
# (recalibration, distillation weight, deep supervision); a new declaration is stepped through without a line here
EXPECTED = {
    "nnUNetTrainerAirwayBaseline": (None, 0.0, False),
    "nnUNetTrainerAirwayCSE": ("cse", 0.0, False),
    "nnUNetTrainerAirwayPE": ("pe", 0.0, False),
    "nnUNetTrainerAirwayFR": ("fr", 0.0, False),
    "nnUNetTrainerAirwayAD": (None, 0.1, False),
    "nnUNetTrainerAirwayFRAD": ("fr", 0.1, False),
    "nnUNetTrainerAirwayFRAD_DS": ("fr", 0.1, True),
    "nnUNetTrainerAirwayFRAD_Adam": ("fr", 0.1, False),
    "nnUNetTrainerAirwayAD_mean": (None, 0.1, False),
    "nnUNetTrainerAirwayAD_w001": (None, 0.01, False),
    "nnUNetTrainerAirwayAD_mean_w001": (None, 0.01, False),
}
MEAN_REDUCTION = {"nnUNetTrainerAirwayAD_mean", "nnUNetTrainerAirwayAD_mean_w001"}  # the others: the paper's sum


def make_trainer(name: str, dataset):
    trainer_class = recursive_find_trainer_class_by_name(name)  # through nnUNet_extTrainer, as nnU-Net does
    plans = dataset.tiny_plans(name)
    plans["continue_training"] = False
    dataset_json = json.loads((dataset.preprocessed / "dataset.json").read_text())
    return trainer_class(plans, dataset.configuration, 0, dataset_json, device=torch.device("cpu"))


def test_every_existing_name_is_still_declared_with_its_settings() -> None:
    for name, (recalibration, distillation_weight, deep_supervision) in EXPECTED.items():
        declaration = BY_NAME[name]
        assert (declaration.recalibration, declaration.distillation_weight, declaration.deep_supervision) == (
            recalibration, distillation_weight, deep_supervision)
        assert declaration.distillation_reduction == ("mean" if name in MEAN_REDUCTION else "sum")


@pytest.mark.parametrize("name", [d.name for d in DECLARATIONS])
def test_trainer_builds_steps_and_loads_strictly_for_prediction(name: str, phantom_dataset, fresh_results) -> None:
    trainer = make_trainer(name, phantom_dataset)
    cls = type(trainer)
    # a real class path, so DDP workers and data-loader processes can pickle it
    assert cls.__module__ == "nnunet_airway.trainers.variants"
    assert pickle.loads(pickle.dumps(cls)) is cls

    trainer.initialize()
    network = unwrapped(trainer.network)
    # the focal loss paper's prior initialisation: every variant starts at p(airway) = FOREGROUND_PRIOR
    with torch.no_grad():
        logits = network(torch.randn(1, 1, *trainer.configuration_manager.patch_size))
    start = torch.softmax(logits[0] if isinstance(logits, list) else logits, 1)[:, 1]
    assert abs(float(start.mean()) - FOREGROUND_PRIOR) < 0.2 * FOREGROUND_PRIOR
    declaration = BY_NAME[name]
    recalibration, deep_supervision = declaration.recalibration, declaration.deep_supervision
    found = {type(m) for m in network.modules()} & {FeatureRecalibration, ProjectExcite, ChannelSE}
    assert found == ({RECALIBRATION_TYPES[recalibration]} if recalibration else set())
    assert trainer.loss.distillation_weight == declaration.distillation_weight
    assert trainer.loss.distillation_reduction == declaration.distillation_reduction
    assert trainer.enable_deep_supervision == deep_supervision

    train_loader, _ = trainer.get_dataloaders()
    batch = next(train_loader)
    assert isinstance(batch["target"], list) == deep_supervision
    before = [p.detach().clone() for p in network.parameters()]
    network.train()
    target = batch["target"][0] if deep_supervision else batch["target"]
    if declaration.topology_loss == "skeleton_recall":  # the data pipeline appended the tubed skeleton
        assert target.shape[1] == 2 and target[:, 1].sum() > 0
        assert bool(((target[:, 1] > 0) <= (target[:, 0] > 0)).all())  # inside the label
    else:
        assert target.shape[1] == 1
    outputs = trainer.train_step(batch)
    loss = float(outputs["loss"])
    assert math.isfinite(loss)  # eq. 7 uses the negative Dice, so the loss may be below 0
    assert ("topology" in outputs) == (declaration.topology_loss is not None)
    if declaration.topology_loss:
        assert 0.0 <= float(outputs["topology"]) <= 1.0
    assert any(not torch.equal(b, p) for b, p in zip(before, network.parameters(), strict=True))

    predictor_network = cls.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels, 2,
        enable_deep_supervision=False)
    predictor_network.load_state_dict(network.state_dict())  # strict
    patch = tuple(trainer.configuration_manager.patch_size)
    with torch.no_grad():
        logits = predictor_network.eval()(torch.zeros(1, 1, *patch))
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, 2, *patch)


def test_adam_variant_uses_the_papers_optimiser(phantom_dataset, fresh_results) -> None:
    trainer = make_trainer("nnUNetTrainerAirwayFRAD_Adam", phantom_dataset)
    trainer.initialize()
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    group = trainer.optimizer.param_groups[0]
    assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 0.0
    for epoch in (0, 500, 999):
        trainer.lr_scheduler.step(epoch)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


def test_compile_follows_nnunets_default(phantom_dataset, fresh_results, monkeypatch) -> None:
    """On for CUDA unless nnUNet_compile=f, off on CPU (nnUNetTrainer._do_i_compile, not overridden)."""
    trainer = make_trainer("nnUNetTrainerAirwayFRAD", phantom_dataset)
    monkeypatch.delenv("nnUNet_compile", raising=False)
    trainer.device = torch.device("cuda")
    assert trainer._do_i_compile() is True
    monkeypatch.setenv("nnUNet_compile", "f")
    assert trainer._do_i_compile() is False
    monkeypatch.setenv("nnUNet_compile", "t")
    trainer.device = torch.device("cpu")
    assert trainer._do_i_compile() is False
