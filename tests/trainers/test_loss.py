"""The trainers' loss: segmentation loss plus the weighted attention-distillation term, added once."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_airway.model.distillation import attention_distillation_loss
from nnunet_airway.model.losses import DiceFocalLoss
from nnunet_airway.trainers.loss import SegmentationWithDistillation


def logits_and_target(shape=(2, 2, 4, 8, 8), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator)
    target = (torch.rand((shape[0], 1, *shape[2:]), generator=generator) > 0.8).float()
    return logits, target


def decoder_features(seed: int = 1, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(2, 8, 2, 4, 4, generator=generator, requires_grad=True),
            scale * torch.randn(2, 4, 4, 8, 8, generator=generator, requires_grad=True)]


def test_without_distillation_it_is_the_segmentation_loss() -> None:
    logits, target = logits_and_target()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.0)
    assert torch.equal(loss(logits, target), DiceFocalLoss()(logits, target))


def test_constant_features_add_nothing() -> None:
    logits, target = logits_and_target()
    constant = [torch.ones(2, 8, 2, 4, 4), torch.ones(2, 4, 4, 8, 8)]
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1, decoder_features=lambda: constant)
    assert loss(logits, target).item() == pytest.approx(DiceFocalLoss()(logits, target).item(), abs=1e-6)


def test_distillation_is_weighted_and_added_once_with_deep_supervision() -> None:
    logits, target = logits_and_target()
    features = decoder_features()
    wrapper = DeepSupervisionWrapper(DiceFocalLoss(), (0.5, 0.5))
    loss = SegmentationWithDistillation(wrapper, 0.1, decoder_features=lambda: features)
    total = loss([logits, logits], [target, target])
    segmentation = DiceFocalLoss()(logits, target)
    distillation = attention_distillation_loss(features)
    assert distillation.item() > 0
    assert total.item() == pytest.approx(segmentation.item() + 0.1 * distillation.item(), rel=1e-6)


def test_without_gradients_as_in_validation_only_the_segmentation_loss() -> None:
    logits, target = logits_and_target()

    def no_features() -> list[torch.Tensor]:
        raise AssertionError("features must not be fetched without gradients")

    with torch.no_grad():
        total = SegmentationWithDistillation(DiceFocalLoss(), 0.1, decoder_features=no_features)(logits, target)
    assert torch.equal(total, DiceFocalLoss()(logits, target))


@pytest.mark.parametrize(("weight", "source", "message"), [
    (-0.1, None, "distillation_weight must be >= 0"),
    (0.1, None, "needs decoder_features"),
])
def test_bad_arguments_are_refused(weight: float, source, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentationWithDistillation(DiceFocalLoss(), weight, decoder_features=source)


def test_finite_float32_under_autocast_with_large_features() -> None:
    logits, target = logits_and_target()
    large = [f.to(torch.bfloat16) for f in decoder_features(scale=300.0)]
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1, decoder_features=lambda: large)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = loss(logits.to(torch.bfloat16), target)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()


def test_mean_reduction_is_passed_to_the_distillation_term() -> None:
    logits, target = logits_and_target()
    features = decoder_features()
    total = SegmentationWithDistillation(DiceFocalLoss(), 0.1, lambda: features, reduction="mean")(logits, target)
    expected = DiceFocalLoss()(logits, target) + 0.1 * attention_distillation_loss(features, reduction="mean")
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        SegmentationWithDistillation(DiceFocalLoss(), 0.1, lambda: features, reduction="max")


def test_training_calls_record_their_components_and_their_means() -> None:
    logits, target = logits_and_target()
    features = [decoder_features(seed=1), decoder_features(seed=2)]
    calls = iter(features)
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1, lambda: next(calls))
    assert loss.pop_mean_components() == {}
    loss(logits, target)
    loss(logits, target)
    segmentation = DiceFocalLoss()(logits, target).item()
    distillations = [attention_distillation_loss(f).item() for f in features]
    assert loss.last_components["distillation"].item() == pytest.approx(distillations[1], rel=1e-6)
    with torch.no_grad():
        loss(logits, target)  # validation: not recorded
    means = loss.pop_mean_components()
    assert set(means) == {"segmentation", "distillation", "attention_entropy"}
    assert means["segmentation"] == pytest.approx(segmentation, rel=1e-6)
    assert means["distillation"] == pytest.approx(sum(distillations) / 2, rel=1e-6)
    assert len(means["attention_entropy"]) == 2 and all(0 < h <= 1 for h in means["attention_entropy"])
    assert loss.pop_mean_components() == {}


def test_without_distillation_only_the_segmentation_loss_is_recorded() -> None:
    logits, target = logits_and_target()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.0)
    loss(logits, target)
    assert loss.pop_mean_components() == {"segmentation": pytest.approx(DiceFocalLoss()(logits, target).item())}
