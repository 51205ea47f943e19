"""DiceFocalLoss (eq. 7) on hand-computed cases; SegmentationWithDistillation adds weight * L_distill once."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_airway.model.distillation import attention_distillation_loss, attention_entropies
from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation


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


def logits_and_target(shape=(2, 2, 4, 8, 8), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator)
    target = (torch.rand((shape[0], 1, *shape[2:]), generator=generator) > 0.8).float()
    return logits, target


def decoder_features(seed: int = 1, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(2, 8, 2, 4, 4, generator=generator, requires_grad=True),
            scale * torch.randn(2, 4, 4, 8, 8, generator=generator, requires_grad=True)]


@pytest.mark.parametrize(("weight", "reduction"), [(0.1, "sum"), (0.3, "mean")])
def test_distillation_adds_weight_times_the_term_with_its_reduction(weight: float, reduction: str) -> None:
    logits, target = logits_and_target()
    features = decoder_features()
    loss = SegmentationWithDistillation(DiceFocalLoss(), weight, distillation_reduction=reduction)
    distill = attention_distillation_loss(features, reduction=reduction).item()
    assert distill > 0
    expected = DiceFocalLoss()(logits, target).item() + weight * distill
    assert loss(logits, target, features).item() == pytest.approx(expected, rel=1e-6)
    assert loss.distillation(features).item() == pytest.approx(weight * distill, rel=1e-6)


def test_without_distillation_it_is_the_segmentation_loss() -> None:
    logits, target = logits_and_target()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.0)
    assert torch.equal(loss(logits, target), DiceFocalLoss()(logits, target))


def test_constant_features_add_nothing() -> None:
    logits, target = logits_and_target()
    constant = [torch.ones(2, 8, 2, 4, 4), torch.ones(2, 4, 4, 8, 8)]
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    assert loss(logits, target, constant).item() == pytest.approx(DiceFocalLoss()(logits, target).item(), abs=1e-6)


def test_without_gradients_as_in_validation_only_the_segmentation_loss() -> None:
    logits, target = logits_and_target()
    with torch.no_grad():  # nnU-Net's validation step: loss(output, target), no features
        total = SegmentationWithDistillation(DiceFocalLoss(), 0.1)(logits, target)
    assert torch.equal(total, DiceFocalLoss()(logits, target))


def test_distillation_is_finite_float32_under_autocast_with_large_features() -> None:
    logits, target = logits_and_target()
    large = [f.to(torch.bfloat16) for f in decoder_features(scale=300.0)]
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = loss(logits.to(torch.bfloat16), target, large)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()


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
    with pytest.raises(ValueError, match="gamma"):
        DiceFocalLoss(gamma=-1)


@pytest.mark.parametrize(("weight", "reduction", "message"), [
    (-0.1, "sum", "distillation_weight must be >= 0"),
    (0.1, "none", "distillation_reduction"),
])
def test_bad_distillation_arguments_are_refused(weight: float, reduction: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationWithDistillation(DiceFocalLoss(), weight, distillation_reduction=reduction)


def test_forward_without_a_feature_source_says_what_is_missing() -> None:
    logits, target = logits_and_target()
    with pytest.raises(ValueError, match="needs the decoder features of the same forward pass"):
        SegmentationWithDistillation(DiceFocalLoss(), 0.1)(logits, target)


def test_components_are_returned_with_the_total_and_nothing_is_kept() -> None:
    logits, target = logits_and_target()
    features = decoder_features()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    attributes = dict(vars(loss))
    total, components = loss(logits, target, features, return_components=True)
    assert set(components) == {"segmentation", "distillation", "attention_entropy"}
    segmentation = DiceFocalLoss()(logits, target).item()
    distillation = attention_distillation_loss(features).item()
    assert components["segmentation"].item() == pytest.approx(segmentation, rel=1e-6)
    assert components["distillation"].item() == pytest.approx(distillation, rel=1e-6)
    assert total.item() == pytest.approx(segmentation + 0.1 * distillation, rel=1e-6)
    torch.testing.assert_close(components["attention_entropy"], attention_entropies(features))
    assert all(not value.requires_grad and value.dtype == torch.float32 for value in components.values())
    assert vars(loss) == attributes  # no state kept between calls


def test_each_attention_map_is_computed_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnunet_airway.model.distillation as distillation_module

    calls = []
    real = distillation_module.attention_map
    monkeypatch.setattr(distillation_module, "attention_map", lambda f, p=2: calls.append(f) or real(f, p))
    logits, target = logits_and_target()
    SegmentationWithDistillation(DiceFocalLoss(), 0.1)(logits, target, decoder_features(), return_components=True)
    assert len(calls) == 2  # two decoder features, one map each, shared by the term and its entropies


def test_without_distillation_only_the_segmentation_component() -> None:
    logits, target = logits_and_target()
    total, components = SegmentationWithDistillation(DiceFocalLoss(), 0.0)(logits, target, return_components=True)
    assert set(components) == {"segmentation"} and torch.equal(total, DiceFocalLoss()(logits, target))
