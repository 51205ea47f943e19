"""The trainers' training step under torch.compile (Inductor and AOTAutograd, CPU) and under bfloat16 autocast (CPU).

nnU-Net compiles the network on CUDA by default and trains it under float16 autocast; neither runs here, so
these tests run the same code on CPU: Inductor's C++ backend and bfloat16 autocast.
"""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_airway.model.distillation import attention_distillation_loss
from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite
from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.standalone import build_trainer, plans_for, set_seed, synthetic_batch
from nnunet_airway.trainers.variants import CORE_VARIANTS, nnUNetTrainerAirwayFRAD_DS

pytestmark = pytest.mark.slow

PATCH = (16, 32, 32)
FEATURES = (2, 4, 4, 4, 4)
STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
VARIANTS = list(CORE_VARIANTS)
# FRAD_DS runs every code path of Baseline, FR, AD and FRAD (FR's autograd Function, distillation, deep
# supervision); PE goes through the same Function.
COMPILED = [nnUNetTrainerAirwayFRAD_DS]


@pytest.fixture()
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    return tmp_path


def make(trainer_class, seed: int = 0):
    set_seed(seed)
    trainer = build_trainer(trainer_class, plans_for(PATCH, FEATURES, STRIDES), torch.device("cpu"))
    return trainer, synthetic_batch(trainer, torch.Generator().manual_seed(seed))


def assert_same_gradients(eager: list, compiled: list, what: str) -> None:
    assert len(eager) == len(compiled)
    for index, (want, got) in enumerate(zip(eager, compiled, strict=True)):
        if want is None or got is None:  # unused: eager leaves None where a compiled graph may write zeros
            present = got if want is None else want
            assert present is None or not present.any(), f"{what} parameter {index}: unused in one mode"
            continue
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1e-3),
                                   msg=lambda m, i=index: f"{what} parameter {i}: {m}")


class _ProjectOwnCode(torch.nn.Module):
    """What this project adds to nnU-Net's network, on one small feature map: FR (eq. 1-5, its autograd
    Function), PE (the same Function), cSE, and attention distillation (eq. 6) over three decoder scales."""

    def __init__(self, channels: int, size: tuple[int, int, int]) -> None:
        super().__init__()
        self.fr = FeatureRecalibration(channels, size, bias=True)
        self.pe = ProjectExcite(channels)
        self.cse = ChannelSE(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cse(self.pe(self.fr(x)))
        coarse = torch.nn.functional.avg_pool3d(y, 2)
        decoder = [torch.nn.functional.avg_pool3d(coarse, 2), coarse, y]
        return y.square().mean() + attention_distillation_loss(decoder, reduction="sum")


def test_inductor_gives_the_eager_values_and_gradients_of_fr_pe_cse_and_distillation() -> None:
    """Inductor's code generation on this project's own operations (FR's and PE's autograd Function, cSE, the
    distillation loss). nnU-Net's convolutions, norms and Dice loss are nnU-Net's and PyTorch's to compile;
    compiling a whole network with Inductor took over 4 minutes on 2 CPU cores, and the whole trainer is
    traced below with AOTAutograd instead."""
    torch.manual_seed(0)
    module = _ProjectOwnCode(4, (8, 12, 10))
    x = torch.randn(2, 4, 8, 12, 10)

    def run(function) -> tuple[float, list]:
        module.zero_grad(set_to_none=True)
        value = function(x)
        value.backward()
        return float(value), [None if q.grad is None else q.grad.clone() for q in module.parameters()]

    # one graph, no break: otherwise Dynamo would leave the Functions to eager and the comparison would be empty
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    eager_value, eager_grads = run(module)
    compiled_value, compiled_grads = run(torch.compile(module, backend="inductor", fullgraph=True))
    assert compiled_value == pytest.approx(eager_value, rel=1e-5, abs=1e-6)
    assert_same_gradients(eager_grads, compiled_grads, "FR + PE + cSE + distillation")


def test_the_whole_trainer_compiles_and_gives_the_eager_loss_and_gradients(results) -> None:
    """Network and loss of FRAD_DS compiled together with TorchDynamo and AOTAutograd (``aot_eager``: the
    graphs Inductor would receive, run without code generation); the network traces without a graph break
    (nnU-Net's DeepSupervisionWrapper breaks the loss's graph on its numpy weights, which is why nnU-Net
    compiles only its Dice term)."""
    trainers, batches = zip(*(make(cls, seed) for seed, cls in enumerate(COMPILED)), strict=True)
    networks = [unwrapped(t.network) for t in trainers]

    def losses(data: list[torch.Tensor], targets: list) -> list[torch.Tensor]:
        """The airway train_step's forward: network with its decoder features, loss with its components."""
        values = []
        for trainer, network, x, y in zip(trainers, networks, data, targets, strict=True):
            output, features = network(x, return_decoder_features=True)
            total, components = trainer.loss(output, y, features, return_components=True)
            values.append(total + 0 * components["attention_entropy"].sum())
        return values

    def gradients(function) -> tuple[list[float], list[list[torch.Tensor]]]:
        for network in networks:
            network.zero_grad(set_to_none=True)
        values = function([b["data"] for b in batches], [b["target"] for b in batches])
        torch.stack(values).sum().backward()
        # None: unused by the loss (nnU-Net weights the coarsest deep-supervision output 0)
        return [float(v) for v in values], [[None if q.grad is None else q.grad.clone() for q in n.parameters()]
                                            for n in networks]

    eager_losses, eager_grads = gradients(losses)
    compiled_losses, compiled_grads = gradients(torch.compile(losses, backend="aot_eager"))
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5, abs=1e-6)
    for network, batch in zip(networks, batches, strict=True):
        explanation = torch._dynamo.explain(network)(batch["data"], return_decoder_features=True)
        assert explanation.graph_break_count == 0, explanation.break_reasons
    for cls, eager, compiled in zip(COMPILED, eager_grads, compiled_grads, strict=True):
        assert_same_gradients(eager, compiled, cls.__name__)


@pytest.mark.parametrize("trainer_class", VARIANTS, ids=lambda c: c.__name__)
def test_bfloat16_autocast_trainer_step(trainer_class, results, cpu_bfloat16) -> None:
    """The airway train_step under CPU bfloat16 autocast, on activations far above float16's range."""
    trainer, batch = make(trainer_class)
    batch["data"] = 300 * batch["data"]
    network = unwrapped(trainer.network)
    before = [p.detach().clone() for p in network.parameters()]
    with cpu_bfloat16():
        loss = float(trainer.train_step(batch)["loss"])
    assert math.isfinite(loss)
    for new in network.parameters():
        assert new.dtype == torch.float32 and torch.isfinite(new).all()
    assert any(not torch.equal(old, new) for old, new in zip(before, network.parameters(), strict=True))
