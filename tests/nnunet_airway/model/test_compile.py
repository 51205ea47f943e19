"""torch.compile traces FR and AD in one graph (fullgraph: any graph break fails) with the same gradients."""

from __future__ import annotations

import pytest
import torch

from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation
from nnunet_airway.model.recalibration import FeatureRecalibration

pytestmark = pytest.mark.slow


def test_fr_and_distillation_compile_without_graph_breaks(randomise) -> None:
    fr = randomise(FeatureRecalibration(4, (3, 4, 5)), 0.2)
    loss_fn = SegmentationWithDistillation(DiceFocalLoss(), 0.1)

    def loss(y: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """The training loss as train_step calls it: output, target, decoder features, with its components."""
        out = fr.recalibrate(y, 0.0)
        total, components = loss_fn(out[:, :2], (out[:, 2:3] > 0).float(), [coarse, out], return_components=True)
        return total + 0 * components["attention_entropy"].sum()

    y = torch.randn(2, 4, 3, 4, 5, requires_grad=True)
    coarse = torch.randn(2, 4, 3, 2, 5, requires_grad=True)
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    compiled(y, coarse).backward()
    compiled_grads = [t.grad.clone() for t in (y, coarse, fr.width_weights)]
    for t in (y, coarse, fr.width_weights):
        t.grad = None
    loss(y, coarse).backward()
    for got, want in zip(compiled_grads, (y.grad, coarse.grad, fr.width_weights.grad), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
