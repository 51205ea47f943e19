"""The distillation term reaches the loss through nnU-Net's wrappers (DDP, torch.compile) and stays finite and
float32 under autocast."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch.nn.parallel import DistributedDataParallel

from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.variants import nnUNetTrainerAirwayFRAD, nnUNetTrainerAirwayFRAD_DS

PATCH = (16, 32, 32)
STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


def small_network() -> FRADUNet:
    torch.manual_seed(0)
    return FRADUNet(1, 2, PATCH, [2, 4, 4, 4, 4], STRIDES, recalibration="fr")


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, *PATCH, generator=generator)
    return image, (image > 1.0).float()


@pytest.mark.slow
def test_unwrapped_sees_through_compile() -> None:
    network = small_network()
    assert unwrapped(torch.compile(network)) is network  # wrapping only; nothing is compiled here


@pytest.mark.parametrize("trainer", [nnUNetTrainerAirwayFRAD, nnUNetTrainerAirwayFRAD_DS])
def test_ddp_trains_and_takes_the_unwrapped_networks_features(trainer, tmp_path: Path) -> None:
    """Two DDP steps (gloo, one process): a parameter without gradient would stop the second one."""
    configuration = ConfigurationManager({"patch_size": list(PATCH), "architecture": {"arch_kwargs": {
        "features_per_stage": [2, 4, 4, 4, 4], "kernel_sizes": [[3, 3, 3]] * 5, "strides": STRIDES}}})
    torch.manual_seed(0)
    network = trainer.build_network_architecture(None, configuration, 1, 2, trainer.deep_supervision)
    segmentation = DiceFocalLoss()
    if trainer.deep_supervision:  # as nnU-Net weights it under DDP without compile
        segmentation = DeepSupervisionWrapper(segmentation, (8 / 15, 4 / 15, 2 / 15, 1e-6))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(network)
        assert unwrapped(ddp) is network
        loss = SegmentationWithDistillation(segmentation, 0.1)
        image, target = batch()
        targets = [target[:, :, ::s, ::s, ::s] for s in (1, 2, 4, 8)]  # the first four stages' scales
        for _ in range(2):
            output, features = ddp(image, return_decoder_features=True)  # through DDP's own forward
            total = loss(output, targets if trainer.deep_supervision else target, features)
            total.backward()
            assert math.isfinite(total.item())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", [torch.bfloat16])  # nnU-Net's fp16 autocast runs on CUDA only
def test_loss_with_distillation_is_finite_float32_under_autocast(dtype: torch.dtype, cpu_bfloat16) -> None:
    network = small_network()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    image, target = batch()
    with cpu_bfloat16():
        output, features = network(100 * image, return_decoder_features=True)
        total = loss(output, target, features)
        total.backward()
    assert total.dtype == torch.float32 and math.isfinite(total.item())
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
