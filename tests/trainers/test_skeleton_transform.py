"""The tubed skeleton in nnU-Net's training pipeline: appended after the spatial augmentation, carried to every
deep-supervision scale with the label, and inside the label after a rotation."""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_airway.trainers.skeleton_transform import TubedSkeletonTransform, with_tubed_skeleton
from nnunet_airway.trainers.variants import TRAINERS

PATCH = (24, 32, 32)
SCALES = [[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]


def nnunet_transforms(deep_supervision_scales=SCALES):
    return nnUNetTrainer.get_training_transforms(
        PATCH, (-np.pi / 6, np.pi / 6), deep_supervision_scales, (0, 1, 2), False)


def diagonal_line_sample() -> dict:
    """A thick straight line across the volume (z, y, x) and an image of it."""
    shape = (32, 40, 40)
    points = np.stack(np.indices(shape), -1).astype(float)
    start, end = np.array([4.0, 6.0, 6.0]), np.array([28.0, 34.0, 30.0])
    t = np.clip(((points - start) @ (end - start)) / ((end - start) @ (end - start)), 0, 1)
    label = (np.linalg.norm(points - (start + t[..., None] * (end - start)), axis=-1) <= 2.5).astype(np.int16)
    image = label.astype(np.float32) * 2 - 1
    return {"image": torch.from_numpy(image)[None], "segmentation": torch.from_numpy(label)[None]}


def test_the_skeleton_goes_in_just_before_the_deep_supervision_downsampling() -> None:
    steps = with_tubed_skeleton(nnunet_transforms()).transforms
    position = next(i for i, s in enumerate(steps) if isinstance(s, TubedSkeletonTransform))
    assert isinstance(steps[position + 1], DownsampleSegForDSTransform) and position > 0
    assert isinstance(with_tubed_skeleton(nnunet_transforms(None)).transforms[-1], TubedSkeletonTransform)


def test_after_a_rotation_the_skeleton_is_inside_the_label_at_every_scale() -> None:
    transforms = with_tubed_skeleton(nnunet_transforms())
    spatial = next(s for s in transforms.transforms if isinstance(s, SpatialTransform))
    spatial.p_rotation, spatial.p_scaling = 1.0, 0.0  # always rotate, by up to 30 degrees about every axis
    spatial.random_crop = False
    torch.manual_seed(0)
    np.random.seed(0)
    sample = diagonal_line_sample()
    unrotated = sample["segmentation"][0, 4:28, 4:36, 4:36].clone()
    out = transforms(**sample)
    segmentations = out["segmentation"]
    assert len(segmentations) == len(SCALES)
    full = segmentations[0]
    assert full.shape == (2, *PATCH)
    assert not torch.equal(full[0], unrotated)  # it was rotated
    assert full[1].sum() > 10
    for scaled in segmentations:
        label, skeleton = scaled[0] > 0, scaled[1] > 0
        assert bool((skeleton <= label).all())  # the skeleton never leaves the label
    # and it is the rotated tube's own skeleton: thinner than the label, along its whole length
    assert full[1].sum() < 0.5 * full[0].clamp(min=0).sum()


def test_only_the_skeleton_recall_trainers_add_it_and_validation_never_does() -> None:
    args = (PATCH, (-np.pi / 6, np.pi / 6), None, (0, 1, 2), False)
    for name, cls in TRAINERS.items():
        trainer = cls.__new__(cls)  # the transforms need no initialised trainer
        steps = trainer.get_training_transforms(*args).transforms
        has = any(isinstance(s, TubedSkeletonTransform) for s in steps)
        assert has == (cls.topology_loss == "skeleton_recall"), name
        validation = trainer.get_validation_transforms(None, False, None, None).transforms
        assert not any(isinstance(s, TubedSkeletonTransform) for s in validation)
