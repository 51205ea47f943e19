"""The distillation term reaches the loss through nnU-Net's wrappers (DDP, torch.compile) and stays finite and
float32 under autocast."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from nnunet_airway.trainers.base import unwrapped
from nnunet_airway.trainers.loss import SegmentationWithDistillation
from torch.nn.parallel import DistributedDataParallel

from nnunet_airway import DiceFocalLoss, FRADUNet

PATCH = (16, 32, 32)
STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]


def small_network() -> FRADUNet:
    torch.manual_seed(0)
    return FRADUNet(1, 2, PATCH, [2, 4, 4, 4, 4], STRIDES, recalibration="fr", distillation=True)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, *PATCH, generator=generator)
    return image, (image > 1.0).float()


def test_unwrapped_sees_through_compile() -> None:
    network = small_network()
    assert unwrapped(torch.compile(network)) is network  # wrapping only; nothing is compiled here


def test_distillation_through_ddp_takes_the_unwrapped_networks_features(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        network = small_network()
        ddp = DistributedDataParallel(network)
        assert unwrapped(ddp) is network
        loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1,
                                            decoder_features=lambda: unwrapped(ddp).pop_decoder_features())
        image, target = batch()
        total = loss(ddp(image), target)
        total.backward()
        assert math.isfinite(total.item())
        assert network.decoder_features is None  # handed over once, not kept
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", [torch.bfloat16])  # nnU-Net's fp16 autocast runs on CUDA only
def test_loss_with_distillation_is_finite_float32_under_autocast(dtype: torch.dtype) -> None:
    network = small_network()
    loss = SegmentationWithDistillation(DiceFocalLoss(), 0.1, decoder_features=network.pop_decoder_features)
    image, target = batch()
    with torch.autocast("cpu", dtype=dtype):
        total = loss(network(100 * image), target)
    assert total.dtype == torch.float32 and math.isfinite(total.item())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in network.parameters() if p.grad is not None)
