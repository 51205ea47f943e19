"""On a CUDA GPU (skipped elsewhere; benchmarks/gpu_suite.py runs them): what users run there, i.e. nnU-Net's
train_step under float16 autocast with its GradScaler, eager and compiled with Inductor, on large activations."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.standalone import build_trainer, plans_for, set_seed, synthetic_batch
from nnunet_airway.trainers.variants import CORE_VARIANTS, nnUNetTrainerAirwayFRAD_DS

pytestmark = [pytest.mark.slow, pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PATCH = (32, 64, 64)
FEATURES = (8, 16, 32, 64, 64)
STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
VARIANTS = list(CORE_VARIANTS)


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return tmp_path


def make(trainer_class, backend: str | None = None, seed: int = 0, data_scale: float = 1.0):
    set_seed(seed)
    trainer = build_trainer(trainer_class, plans_for(PATCH, FEATURES, STRIDES), torch.device("cuda"), backend)
    batch = synthetic_batch(trainer, torch.Generator().manual_seed(seed), data_scale)
    return trainer, batch


@pytest.mark.parametrize(("trainer_class", "backend"), [(cls, None) for cls in VARIANTS]
                         + [(nnUNetTrainerAirwayFRAD_DS, "inductor")],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_float16_trainer_steps_on_large_activations(trainer_class, backend, results) -> None:
    """Finite losses and weights, and an update within 20 steps (GradScaler skips steps whose gradients overflow
    while it lowers its scale)."""
    trainer, batch = make(trainer_class, backend, data_scale=300.0)
    assert trainer.grad_scaler is not None  # nnU-Net's mixed precision is on
    network = unwrapped(trainer.network)
    before = [p.detach().clone() for p in network.parameters()]
    for _ in range(20):
        loss = float(trainer.train_step(batch)["loss"])
        assert math.isfinite(loss)
        if any(not torch.equal(old, new) for old, new in zip(before, network.parameters(), strict=True)):
            break
    else:
        pytest.fail("20 steps without an update")
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in network.parameters())


def test_inductor_gives_the_eager_loss_and_gradients_on_cuda(results, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    for cls in [nnUNetTrainerAirwayFRAD_DS]:  # every FR and AD code path; the CPU test covers PE and cSE too
        trainer, batch = make(cls)
        network = unwrapped(trainer.network)
        data = batch["data"].cuda()
        target = [t.cuda() for t in batch["target"]] if isinstance(batch["target"], list) else batch["target"].cuda()
        results_by_mode = []
        for module in (network, torch.compile(network)):
            network.zero_grad(set_to_none=True)
            loss = trainer.loss(module(data), target)
            loss.backward()
            results_by_mode.append((float(loss), [p.grad.clone() for p in network.parameters() if p.grad is not None]))
        (eager_loss, eager), (compiled_loss, compiled) = results_by_mode
        assert compiled_loss == pytest.approx(eager_loss, rel=1e-4, abs=1e-5), cls.__name__
        for index, (want, got) in enumerate(zip(eager, compiled, strict=True)):
            error = float((got - want).norm()) / max(float(want.norm()), 1e-12)
            assert error < 1e-3, f"{cls.__name__} parameter {index}: relative error {error:.2e}"
