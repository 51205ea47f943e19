"""The data-pipeline step of the Skeleton Recall loss: the tubed skeleton of each training patch's label,
appended to the segmentation as a second channel.

It runs after nnU-Net's spatial augmentation (on the label as augmented, so the skeleton is the augmented
tree's, as Kirchhoff et al. compute it) and before the deep-supervision downsampling (which then carries it to
every scale with the label). The airway trainers' ``train_step`` splits it off again; the validation pipeline
never adds it.
"""

from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunet_airway.model.topology_losses import tubed_skeleton


class TubedSkeletonTransform(SegOnlyTransform):
    """segmentation (1, D, H, W) -> (2, D, H, W): the label, then its tubed skeleton (1 on the tube, same dtype).

    ``radius``: voxels the skeleton is thickened by (inside the label), see ``tubed_skeleton``.
    """

    def __init__(self, radius: int = 1) -> None:
        super().__init__()
        self.radius = radius

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        if segmentation.dim() != 4 or segmentation.shape[0] != 1:
            raise ValueError(f"TubedSkeletonTransform expects a (1, D, H, W) label, got {tuple(segmentation.shape)}")
        tube = tubed_skeleton(segmentation[0].numpy() > 0, self.radius)
        return torch.cat((segmentation, torch.from_numpy(tube).to(segmentation.dtype)[None]))


def with_tubed_skeleton(transforms: ComposeTransforms, radius: int = 1) -> ComposeTransforms:
    """nnU-Net's training transforms with TubedSkeletonTransform inserted just before the deep-supervision
    downsampling (at the end when there is none)."""
    steps = list(transforms.transforms)
    position = next((i for i, step in enumerate(steps) if isinstance(step, DownsampleSegForDSTransform)), len(steps))
    steps.insert(position, TubedSkeletonTransform(radius))
    return ComposeTransforms(steps)
