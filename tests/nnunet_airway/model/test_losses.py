"""DiceFocalLoss (eq. 7 + alpha * L_distill) on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_airway.model.distillation import attention_distillation_loss
from nnunet_airway.model.losses import DiceFocalLoss


def two_voxel_case() -> tuple[torch.Tensor, torch.Tensor, float]:
    """Airway probabilities 0.5 and 0.75 (logits [0, 0] and [0, log 3]); labels 1 and 0."""
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)]], dtype=torch.float64).T.reshape(1, 2, 1, 1, 2)
    target = torch.tensor([1.0, 0.0], dtype=torch.float64).reshape(1, 1, 1, 1, 2)
    dice = 2 * 0.5 / (0.5 + 0.75 + 1 + 1e-7)
    focal = (-(0.5**2) * math.log(0.5) - (0.75**2) * math.log(0.25)) / 2  # p_t = 0.5 and 1 - 0.75
    return logits, target, focal - dice


def test_two_voxel_case_by_hand() -> None:
    logits, target, expected = two_voxel_case()
    assert DiceFocalLoss()(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_target_without_channel_axis_and_integer_dtype_are_accepted() -> None:
    logits, target, expected = two_voxel_case()
    assert DiceFocalLoss()(logits, target[:, 0].long()).item() == pytest.approx(expected, rel=1e-12)


def test_gamma_zero_gives_cross_entropy_and_dice_is_over_the_whole_batch() -> None:
    logits = torch.randn(3, 2, 2, 3, 4, dtype=torch.float64)
    target = (torch.rand(3, 1, 2, 3, 4) > 0.5).double()
    prob = torch.softmax(logits, 1)[:, 1:]
    cross_entropy = torch.nn.functional.cross_entropy(logits, target[:, 0].long())
    dice = 2 * (prob * target).sum() / (prob.sum() + target.sum() + 1e-7)
    loss = DiceFocalLoss(gamma=0.0)(logits, target)
    assert loss.item() == pytest.approx((cross_entropy - dice).item(), rel=1e-12)


def test_single_channel_sigmoid_logits_equal_two_channel_softmax() -> None:
    x = torch.randn(2, 1, 3, 3, 3, dtype=torch.float64)
    target = (torch.rand(2, 1, 3, 3, 3) > 0.7).double()
    two = torch.cat((torch.zeros_like(x), x), 1)
    loss = DiceFocalLoss()
    assert loss(x, target).item() == pytest.approx(loss(two, target).item(), rel=1e-12)


def test_confident_correct_prediction_reaches_minus_one() -> None:
    target = (torch.rand(1, 1, 4, 4, 4) > 0.5).float()
    logits = torch.cat((-50 * (2 * target - 1), 50 * (2 * target - 1)), 1)
    assert DiceFocalLoss()(logits, target).item() == pytest.approx(-1.0, abs=1e-6)


def test_decoder_features_add_alpha_times_distillation() -> None:
    logits, target, expected = two_voxel_case()
    features = [torch.randn(1, 3, 1, 1, 1), torch.randn(1, 2, 1, 1, 2)]
    loss = DiceFocalLoss(alpha=0.1)
    distill = attention_distillation_loss(features).item()
    assert distill > 0
    assert loss(logits, target, features).item() == pytest.approx(expected + 0.1 * distill, rel=1e-6)
    assert loss.distillation(features).item() == pytest.approx(0.1 * distill, rel=1e-6)


def test_works_inside_nnunet_deep_supervision_wrapper() -> None:
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    loss = DiceFocalLoss()
    wrapped = DeepSupervisionWrapper(loss, [1.0, 0.5])
    outputs = [torch.randn(2, 2, 4, 4, 4, requires_grad=True), torch.randn(2, 2, 2, 2, 2, requires_grad=True)]
    targets = [(torch.rand(2, 1, 4, 4, 4) > 0.5).float(), (torch.rand(2, 1, 2, 2, 2) > 0.5).float()]
    total = wrapped(outputs, targets)
    expected = loss(outputs[0], targets[0]) + 0.5 * loss(outputs[1], targets[1])
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(torch.isfinite(o.grad).all() for o in outputs)


def test_finite_under_bfloat16_autocast_with_large_logits() -> None:
    logits = (1e4 * torch.randn(2, 2, 4, 4, 4)).requires_grad_()
    target = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = DiceFocalLoss()(logits.to(torch.bfloat16), target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_arguments_raise() -> None:
    loss = DiceFocalLoss()
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 2, 4, 4, 4\)"):
        loss(torch.zeros(2, 2, 4, 4, 4), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, 2, \.\.\.\)"):
        loss(torch.zeros(2, 3, 4, 4, 4), torch.zeros(2, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="distillation_reduction"):
        DiceFocalLoss(distillation_reduction="none")
    with pytest.raises(ValueError, match="alpha"):
        DiceFocalLoss(alpha=-1)
