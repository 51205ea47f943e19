"""Skeleton-based losses for thin branches: Skeleton Recall and clDice.

- Skeleton Recall (Kirchhoff et al., "Skeleton Recall Loss for Connectivity Conserving and Resource Efficient
  Segmentation of Thin Tubular Structures", ECCV 2024): the reference skeleton, thickened to a tube inside the
  label (:func:`tubed_skeleton`, computed on the CPU in the data pipeline), and the loss one minus the soft
  recall of that tube by the predicted foreground probability (:class:`SkeletonRecallLoss`).
- clDice (Shit et al., "clDice - a Novel Topology-Preserving Loss Function for Tubular Structure Segmentation",
  CVPR 2021): soft skeletons of prediction and reference by iterated min/max pooling (:func:`soft_skeleton`) and
  one minus the harmonic mean of topology precision and sensitivity (:class:`SoftClDiceLoss`).

Both losses take logits (N, C, D, H, W) with C >= 2 (softmax; the airway is every class but 0) and are computed
in float32 with autocast off, so they behave the same under fp16/bf16 training and torch.compile.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.morphology import skeletonize
from torch import Tensor, nn

TOPOLOGY_LOSSES = ("skeleton_recall", "cldice")


def tubed_skeleton(label: np.ndarray, radius: int = 1) -> np.ndarray:
    """The skeleton of a binary 3-D ``label`` (D, H, W), dilated by ``radius`` voxels with the 6-connected cross
    and kept inside the label: uint8 (D, H, W), 1 on the tube. ``radius`` 0 gives the bare skeleton.

    Kirchhoff et al. thicken the skeleton so that the recall target has some width ("tubed skeleton"); keeping
    the tube inside the label means it never asks for voxels outside the airway.
    """
    if label.ndim != 3:
        raise ValueError(f"tubed_skeleton expects a (D, H, W) label, got shape {label.shape}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    foreground = label > 0
    if not foreground.any():
        return np.zeros(label.shape, np.uint8)
    skeleton = skeletonize(foreground).astype(bool)
    if radius:
        cross = ndimage.generate_binary_structure(3, 1)
        skeleton = ndimage.binary_dilation(skeleton, cross, iterations=radius) & foreground
    return skeleton.astype(np.uint8)


def _probability_and_mask(logits: Tensor, mask: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """The softmax probability of every class but 0, summed, and ``mask > 0``: both (N, 1, D, H, W) float32
    (call with autocast off). ValueError naming ``name`` when ``mask`` is not that shape."""
    if logits.dim() != 5 or logits.shape[1] < 2:
        raise ValueError(f"expected logits (N, C >= 2, D, H, W), got {tuple(logits.shape)}")
    probability = 1.0 - torch.softmax(logits.float(), dim=1)[:, :1]
    if mask.shape != probability.shape:
        raise ValueError(f"{name} must be (N, 1, D, H, W) = {tuple(probability.shape)}, got {tuple(mask.shape)}")
    return probability, (mask > 0).float()


SPATIAL = (1, 2, 3, 4)  # the sums of both losses: per sample over channel and space, then the batch mean


class SkeletonRecallLoss(nn.Module):
    """``1 - sum(p * S) / sum(S)``: one minus the soft recall of the tubed reference skeleton S by the predicted
    airway probability p, per sample (a sample without skeleton voxels gives 0), averaged over the batch. The
    per-sample mean makes DDP's gradient averaging over equal per-rank batches equal to one process on their
    union.

    ``forward(logits, skeleton)``: logits (N, C, D, H, W), skeleton (N, 1, D, H, W) in {0, 1} (any dtype).
    ``smooth`` is added to numerator and denominator (Kirchhoff et al. use a small smoothing term too).
    """

    def __init__(self, smooth: float = 1e-5) -> None:
        super().__init__()
        if not smooth >= 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.smooth = float(smooth)

    def forward(self, logits: Tensor, skeleton: Tensor) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            probability, target = _probability_and_mask(logits, skeleton, "skeleton")
            total = target.sum(SPATIAL)
            recall = ((probability * target).sum(SPATIAL) + self.smooth) / (total + self.smooth)
            return torch.where(total > 0, 1.0 - recall, torch.zeros_like(recall)).mean()


def soft_erode(x: Tensor) -> Tensor:
    """Min-pooling over the 6-neighbourhood (three 3-voxel line minima), as in Shit et al.'s soft skeleton."""
    return torch.minimum(torch.minimum(-F.max_pool3d(-x, (3, 1, 1), 1, (1, 0, 0)),
                                       -F.max_pool3d(-x, (1, 3, 1), 1, (0, 1, 0))),
                         -F.max_pool3d(-x, (1, 1, 3), 1, (0, 0, 1)))


def soft_dilate(x: Tensor) -> Tensor:
    """Max-pooling over the 3x3x3 neighbourhood."""
    return F.max_pool3d(x, 3, 1, 1)


def soft_skeleton(x: Tensor, iterations: int = 3) -> Tensor:
    """Shit et al.'s soft skeleton of a (soft) mask x (N, C, D, H, W) in [0, 1]: what erosion removes that an
    opening does not restore, accumulated over ``iterations`` erosions. Same shape and dtype as x."""
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    eroded = soft_erode(x)
    skeleton = F.relu(x - soft_dilate(eroded))
    for _ in range(iterations):
        # the erosion inside this opening is the next step's erosion: computed once (Shit et al.'s code computes
        # it twice; the values are the same)
        x, eroded = eroded, soft_erode(eroded)
        delta = F.relu(x - soft_dilate(eroded))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


class SoftClDiceLoss(nn.Module):
    """``1 - 2 Tprec Tsens / (Tprec + Tsens)`` with Tprec = |S(p) . y| / |S(p)| and Tsens = |S(y) . p| / |S(y)|,
    S the soft skeleton (Shit et al., eq. 1-3), p the airway probability and y the reference, per sample and
    averaged over the batch (Shit et al.'s code sums over the batch; per sample keeps DDP's averaging exact).

    ``forward(logits, target)``: logits (N, C, D, H, W), target (N, 1, D, H, W) label map (airway = label > 0).
    ``iterations``: soft-skeleton erosions (Shit et al.'s code: 3; it should reach the thickest branch's radius
    in voxels to skeletonise it fully). ``smooth``: added to every ratio (their code: 1).
    """

    def __init__(self, iterations: int = 3, smooth: float = 1.0) -> None:
        super().__init__()
        if iterations < 0 or not smooth >= 0:
            raise ValueError(f"iterations and smooth must be >= 0, got {iterations} and {smooth}")
        self.iterations = int(iterations)
        self.smooth = float(smooth)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            probability, reference = _probability_and_mask(logits, target, "target")
            skeleton_prediction = soft_skeleton(probability, self.iterations)
            skeleton_reference = soft_skeleton(reference, self.iterations)
            precision = (((skeleton_prediction * reference).sum(SPATIAL) + self.smooth)
                         / (skeleton_prediction.sum(SPATIAL) + self.smooth))
            sensitivity = (((skeleton_reference * probability).sum(SPATIAL) + self.smooth)
                           / (skeleton_reference.sum(SPATIAL) + self.smooth))
            return (1.0 - 2.0 * precision * sensitivity / (precision + sensitivity)).mean()
