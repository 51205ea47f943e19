"""The trainers' loss from their class attributes: distillation weight and reduction, added once per step."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunet_airway.model.distillation import attention_distillation_loss
from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.base import AirwayTrainerBase
from nnunet_airway.trainers.variants import nnUNetTrainerAirwayBaseline, nnUNetTrainerAirwayFRAD

PATCH = (16, 32, 32)
STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


class StrongMeanDistillation(nnUNetTrainerAirwayFRAD):
    """The released code's reduction at another weight, set the way Table 2's variants set their flags."""

    distillation_weight = 0.3
    distillation_reduction = "mean"


def bare_trainer(trainer_class: type[AirwayTrainerBase], network: torch.nn.Module) -> AirwayTrainerBase:
    """A trainer without nnU-Net's __init__ (which needs planned data): just what ``_build_loss`` reads."""
    trainer = object.__new__(trainer_class)
    trainer.enable_deep_supervision = False
    trainer.is_ddp = False
    trainer.network = network
    return trainer


def network_and_batch() -> tuple[FRADUNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    network = FRADUNet(1, 2, PATCH, [2, 4, 4, 4, 4], STRIDES, recalibration="fr")
    image = torch.randn(2, 1, *PATCH)
    return network, image, (image > 1.0).float()


def test_the_base_trainer_uses_the_papers_weight_and_reduction() -> None:
    assert (AirwayTrainerBase.distillation_weight, AirwayTrainerBase.distillation_reduction) == (0.1, "sum")


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerAirwayFRAD, StrongMeanDistillation])
def test_class_attributes_set_the_distillation_weight_and_reduction(trainer_class) -> None:
    network, image, target = network_and_batch()
    loss = bare_trainer(trainer_class, network)._build_loss()
    assert isinstance(loss, SegmentationWithDistillation)
    output, features = network(image, return_decoder_features=True)
    distillation = attention_distillation_loss(features, reduction=trainer_class.distillation_reduction)
    expected = DiceFocalLoss()(output, target) + trainer_class.distillation_weight * distillation

    total, components = loss(output, target, features, return_components=True)

    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert components["distillation"].item() == pytest.approx(distillation.item(), rel=1e-6)


def test_a_variant_without_distillation_gets_the_segmentation_loss_alone() -> None:
    network, image, target = network_and_batch()
    loss = bare_trainer(nnUNetTrainerAirwayBaseline, network)._build_loss()
    assert loss.distillation_weight == 0.0
    assert torch.equal(loss(network(image), target), DiceFocalLoss()(network(image), target))


def test_distillation_is_added_once_with_deep_supervision() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 4, 8, 8, generator=generator)
    target = (torch.rand(2, 1, 4, 8, 8, generator=generator) > 0.8).float()
    features = [torch.randn(2, 8, 2, 4, 4, generator=generator, requires_grad=True),
                torch.randn(2, 4, 4, 8, 8, generator=generator, requires_grad=True)]
    wrapper = DeepSupervisionWrapper(DiceFocalLoss(), (0.5, 0.5))
    loss = SegmentationWithDistillation(wrapper, 0.1)
    total = loss([logits, logits], [target, target], features)
    segmentation = DiceFocalLoss()(logits, target)
    distillation = attention_distillation_loss(features)
    assert distillation.item() > 0
    assert total.item() == pytest.approx(segmentation.item() + 0.1 * distillation.item(), rel=1e-6)
