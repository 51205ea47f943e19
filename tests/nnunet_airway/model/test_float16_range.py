"""Activations beyond float16's range when squared and summed over channels (max 65504) still give finite
attention maps, gates and losses: those are accumulated in float32 whatever the features' dtype."""

from __future__ import annotations

import math

import torch

from nnunet_airway.model.distillation import attention_distillation_loss, attention_map
from nnunet_airway.model.losses import DiceFocalLoss
from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite


def large_features(shape: tuple[int, ...], scale: float, seed: int = 0) -> torch.Tensor:
    """float16 features of magnitude ``scale`` (clipped to float16's range): 64 channels of 300 square-sum to 5.8e6."""
    values = scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return values.clamp(-6e4, 6e4).half()


def test_attention_maps_and_distillation_loss_stay_finite() -> None:
    coarse = large_features((2, 64, 2, 4, 4), 300.0, 1).requires_grad_()
    fine = large_features((2, 32, 4, 8, 8), 300.0, 2).requires_grad_()
    assert float((fine.detach().float() ** 2).sum(1).max()) > torch.finfo(torch.float16).max  # would overflow in fp16
    attention = attention_map(fine)
    assert attention.dtype == torch.float32 and torch.isfinite(attention).all()
    torch.testing.assert_close(attention.double(), (fine.double() ** 2).sum(1, keepdim=True), rtol=1e-5, atol=0)
    loss = attention_distillation_loss([coarse, fine])
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(coarse.grad).all() and coarse.grad.dtype == torch.float16


def test_gates_stay_finite_and_agree_with_float64() -> None:
    """K1 sums 64 channels of projections near 1e4 (far beyond fp16); the gates stay in [0, 1] and agree with a
    float64 run on average (single gates near sigmoid's steep middle may differ: the fp16 input is rounded)."""
    x = large_features((1, 64, 4, 6, 8), 1e4)
    positive = x.double() > 0
    for block in (FeatureRecalibration(64, (4, 6, 8)), ProjectExcite(64), ChannelSE(64)):
        name = type(block).__name__
        with torch.no_grad():
            out = block.recalibrate(x, 0.0)
            want = block.double().recalibrate(x.double(), 0.0)
        assert out.dtype == torch.float16 and torch.isfinite(out).all(), name
        gate = out.double()[positive] / x.double()[positive]
        assert float(gate.min()) >= 0 and float(gate.max()) <= 1 + 1e-3, name
        assert float((gate - want[positive] / x.double()[positive]).abs().mean()) < 0.02, name


def test_dice_focal_loss_stays_finite_on_large_float16_logits() -> None:
    logits = large_features((2, 2, 4, 8, 8), 2e4).requires_grad_()
    target = (torch.rand(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.8).float()
    loss = DiceFocalLoss()(logits, target)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    loss.backward()
    assert torch.isfinite(logits.grad).all()
