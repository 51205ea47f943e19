"""The paper's training loss (Qin et al. 2020): eq. 7 (Dice + focal) plus weight * L_distill (eq. 6).

``DiceFocalLoss`` is the segmentation term alone, so nnU-Net's ``DeepSupervisionWrapper`` can sum it over
scales; ``SegmentationWithDistillation`` is the one place that adds the weighted distillation term, once per
step, whatever the segmentation loss is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from nnunet_airway.model.distillation import (
    attention_distillation_loss,
    decoder_attention_maps,
    distillation_from_maps,
    entropies_from_maps,
)
from nnunet_airway.model.topology_losses import SkeletonRecallLoss, SoftClDiceLoss

DISTILLATION_REDUCTIONS = ("sum", "mean")


class DiceFocalLoss(nn.Module):
    """L_seg = -2 sum(p y) / (sum(p + y) + eps) + mean_x(-(1 - p_t)^gamma log p_t)  (eq. 7).

    p is the airway probability, y the binary label; sums run over every voxel of the batch (batch Dice);
    p_t = p where y = 1 and 1 - p elsewhere (focal loss without class weight, averaged over voxels).

    Args:
        gamma: focal exponent (paper 2).
        eps: Dice denominator guard (paper 1e-7).
        ddp: under torch.distributed (DDP, ``nnUNetv2_train -num_gpus N``), sum the Dice's intersection and
            denominator over every rank (a differentiable all-reduce), so the batch Dice is the one of the
            whole distributed batch and DDP's averaged gradients equal one process on the union of the ranks'
            batches (as nnU-Net's own Dice does with ``ddp=True``); the focal mean needs nothing (equal batch
            sizes per rank). Without an initialised process group it changes nothing.

    ``forward(logits, target)``: logits (N, 2, ...) as nnU-Net produces them (softmax; channel 1 is the
    airway) or (N, 1, ...) (sigmoid); target (N, 1, ...) or (N, ...) with values {0, 1} (any dtype).
    Computed in float32 under autocast; returns a scalar.
    """

    def __init__(self, gamma: float = 2.0, eps: float = 1e-7, ddp: bool = False) -> None:
        super().__init__()
        if gamma < 0 or eps < 0:
            raise ValueError(f"gamma and eps must be >= 0, got gamma={gamma}, eps={eps}")
        self.gamma = gamma
        self.eps = eps
        self.ddp = ddp

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() < 3 or logits.shape[1] not in (1, 2):
            raise ValueError(f"logits must have shape (N, 2, ...) or (N, 1, ...), got {tuple(logits.shape)}")
        expected = (logits.shape[0], 1, *logits.shape[2:])
        given = tuple(target.shape)
        if target.dim() == logits.dim() - 1:
            target = target.unsqueeze(1)
        if tuple(target.shape) != expected:
            raise ValueError(
                f"target shape {given} does not match logits shape {tuple(logits.shape)}: expected {expected}"
            )
        with torch.autocast(logits.device.type, enabled=False):
            x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
            y = target.to(x.dtype)
            if x.shape[1] == 2:
                log_probs = F.log_softmax(x, dim=1)
                log_p, log_q = log_probs[:, 1:], log_probs[:, :1]
            else:
                log_p, log_q = F.logsigmoid(x), F.logsigmoid(-x)
            prob = log_p.exp()
            intersection, total = (prob * y).sum(), prob.sum() + y.sum()
            if self.ddp and dist.is_available() and dist.is_initialized():
                import torch.distributed.nn.functional as dist_nn  # only where a process group exists

                intersection = dist_nn.all_reduce(intersection)
                total = dist_nn.all_reduce(total)
            dice = 2 * intersection / (total + self.eps)
            log_pt = y * log_p + (1 - y) * log_q
            focal = -((1 - log_pt.exp()).pow(self.gamma) * log_pt).mean()
            return focal - dice


class SegmentationWithDistillation(nn.Module):
    """``loss(output, target, decoder_features) = segmentation(output, target) + weight * L_distill(features)
    [+ topology_weight * topology(finest logits, ...)]``.

    Args:
        segmentation: e.g. ``DiceFocalLoss()``, or nnU-Net's ``DeepSupervisionWrapper`` around it.
        distillation_weight: weight of the distillation term (paper 0.1); 0 switches it off.
        distillation_reduction: "sum" (paper) or "mean" (released code), see ``distillation_from_maps``.
        p: exponent of the attention maps (paper 2).
        topology: None, ``SkeletonRecallLoss()`` (takes the ``skeleton`` given to forward) or ``SoftClDiceLoss()``
            (takes the target), on the full-resolution logits and target only; topology_weight: its weight (> 0).

    ``forward(output, target, decoder_features=None, return_components=False, skeleton=None)``: ``decoder_features`` are the
    network's decoder outputs of the same pass, coarse to fine (``FRADUNet(x, return_decoder_features=True)``);
    with a weight > 0 a training call (gradients on) needs them, a call without gradients (nnU-Net's validation
    step) is the segmentation loss alone. Returns the total, a scalar; with ``return_components`` also a dict
    of detached float32 tensors: ``segmentation``, with distillation ``distillation`` (the unweighted term)
    and ``attention_entropy`` (per decoder scale, coarse to fine: see entropies_from_maps), with a topology loss
    ``topology`` (unweighted; training calls only, like the distillation term). Each attention map
    is computed once per call, in float32; the term is added once, also when ``segmentation`` sums over scales.
    The loss keeps no state between calls.
    """

    def __init__(self, segmentation: nn.Module, distillation_weight: float, distillation_reduction: str = "sum",
                 p: float = 2, topology: nn.Module | None = None, topology_weight: float = 0.0) -> None:
        super().__init__()
        if distillation_weight < 0:
            raise ValueError(f"distillation_weight must be >= 0, got {distillation_weight}")
        if (topology is None) != (topology_weight == 0) or topology_weight < 0:
            raise ValueError(f"a topology loss needs a weight > 0 and a weight needs a loss, got {topology!r} and "
                             f"{topology_weight}")
        if topology is not None and not isinstance(topology, SkeletonRecallLoss | SoftClDiceLoss):
            raise ValueError(f"topology must be SkeletonRecallLoss or SoftClDiceLoss, got {type(topology).__name__}")
        self.topology = topology
        self.topology_weight = float(topology_weight)
        if distillation_reduction not in DISTILLATION_REDUCTIONS:
            raise ValueError(f'distillation_reduction must be "sum" or "mean", got {distillation_reduction!r}')
        self.segmentation = segmentation
        self.distillation_weight = float(distillation_weight)
        self.distillation_reduction = distillation_reduction
        self.p = p

    @property
    def uses_decoder_features(self) -> bool:
        return self.distillation_weight > 0

    @property
    def uses_skeleton(self) -> bool:
        return isinstance(self.topology, SkeletonRecallLoss)

    def forward(self, output, target, decoder_features: Sequence[Tensor] | None = None,
                return_components: bool = False, skeleton: Tensor | None = None
                ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        loss = self.segmentation(output, target)
        components = {"segmentation": loss}
        if self.topology is not None and torch.is_grad_enabled():
            finest = output[0] if isinstance(output, list | tuple) else output
            if self.uses_skeleton:
                if skeleton is None:
                    raise ValueError("the Skeleton Recall loss needs the tubed reference skeleton of the batch: "
                                     "loss(output, target, decoder_features, skeleton=skeleton)")
                term = self.topology(finest, skeleton)
            else:
                term = self.topology(finest, target[0] if isinstance(target, list | tuple) else target)
            components["topology"] = term
            loss = loss + self.topology_weight * term
        if self.uses_decoder_features and torch.is_grad_enabled():
            if decoder_features is None:
                raise ValueError("distillation_weight > 0 needs the decoder features of the same forward pass: "
                                 "loss(output, target, decoder_features) with "
                                 "output, decoder_features = network(x, return_decoder_features=True)")
            maps = decoder_attention_maps(decoder_features, self.p)
            term = distillation_from_maps(maps, self.distillation_reduction)
            components.update(distillation=term, attention_entropy=entropies_from_maps(maps))
            loss = loss + self.distillation_weight * term
        if not return_components:
            return loss
        return loss, {name: value.detach().float() for name, value in components.items()}

    def distillation(self, decoder_features: Sequence[Tensor]) -> Tensor:
        """weight * L_distill for decoder features ordered coarse to fine (a float32 scalar)."""
        return self.distillation_weight * attention_distillation_loss(decoder_features, self.p,
                                                                      self.distillation_reduction)
