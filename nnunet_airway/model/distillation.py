"""Attention distillation (Qin et al. 2020, eq. 6): finer decoder attention maps teach the coarser ones.

Attention maps and the loss are computed in float32 whatever the features' dtype (autocast is switched off
here): a sum of squares over hundreds of channels overflows fp16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# float32 temporaries hold at most this many elements, so no full-size float32 copy of the features is made
CHUNK_ELEMENTS = 1 << 24


def _channel_chunk(features: Tensor) -> int:
    per_channel = features[:, :1].numel()
    return max(1, CHUNK_ELEMENTS // max(per_channel, 1))


class _AttentionMapFunction(torch.autograd.Function):
    """G = sum_c |A_c|^p accumulated in float32 (float64 stays float64), keeping only A for backward."""

    @staticmethod
    def forward(ctx, features, p):  # type: ignore[override]
        dt = torch.promote_types(features.dtype, torch.float32)
        total = torch.zeros((features.shape[0], 1, *features.shape[2:]), dtype=dt, device=features.device)
        for chunk in features.split(_channel_chunk(features), dim=1):
            chunk = chunk.to(dt)
            total += (chunk.square() if p == 2 else chunk.abs().pow(p)).sum(1, keepdim=True)
        ctx.p = p
        ctx.save_for_backward(features)
        return total

    @staticmethod
    def backward(ctx, grad_map):  # type: ignore[override]
        (features,) = ctx.saved_tensors
        p = ctx.p
        grad = torch.empty_like(features)
        start = 0
        for chunk in features.split(_channel_chunk(features), dim=1):
            a = chunk.to(grad_map.dtype)
            if p == 2:
                local = 2 * a
            else:
                local = p * a.abs().pow(p - 1) * a.sign()
            grad[:, start : start + chunk.shape[1]] = (grad_map * local).to(grad.dtype)
            start += chunk.shape[1]
        return grad, None


def attention_map(features: Tensor, p: float = 2) -> Tensor:
    """G = sum_c |A_c|^p for features A of shape (N, C, D, H, W): (N, 1, D, H, W) in float32.

    ``p`` must be >= 1 (the paper uses 2).
    """
    if features.dim() != 5:
        raise ValueError(f"attention_map expects features of shape (N, C, D, H, W), got {tuple(features.shape)}")
    if not p >= 1:
        raise ValueError(f"attention_map needs p >= 1, got p={p}")
    with torch.autocast(features.device.type, enabled=False):
        return _AttentionMapFunction.apply(features, p)


def _spatial_softmax(attention: Tensor) -> Tensor:
    """Softmax over all voxels of each sample: (N, 1, D, H, W) -> (N, D*H*W)."""
    return torch.softmax(attention.flatten(1), dim=1)


def decoder_attention_maps(decoder_features: Sequence[Tensor], p: float = 2) -> list[Tensor]:
    """attention_map of each decoder feature, ordered coarse to fine: (N, 1, D_m, H_m, W_m) float32 each.

    Checks that the features are 5-D, share the batch size and are ordered coarse to fine; the maps are what
    :func:`distillation_from_maps` and :func:`entropies_from_maps` take, so one step computes them once.
    """
    features = list(decoder_features)
    if len(features) < 2:
        raise ValueError(f"attention distillation needs at least 2 decoder features, got {len(features)}")
    for index, feature in enumerate(features):
        if feature.dim() != 5 or feature.shape[0] != features[0].shape[0]:
            raise ValueError(
                f"decoder feature {index} must have shape (N, C, D, H, W) with N={features[0].shape[0]}, "
                f"got {tuple(feature.shape)}"
            )
    for index, (coarse, fine) in enumerate(zip(features[:-1], features[1:], strict=True)):
        if any(c > f for c, f in zip(coarse.shape[2:], fine.shape[2:], strict=True)):
            raise ValueError(
                f"decoder features must be ordered coarse to fine: feature {index} has spatial size "
                f"{tuple(coarse.shape[2:])}, feature {index + 1} has {tuple(fine.shape[2:])}"
            )
    return [attention_map(feature, p) for feature in features]


def distillation_from_maps(maps: Sequence[Tensor], reduction: str = "sum") -> Tensor:
    """L_distill of eq. 6 from the attention maps of consecutive decoder scales (coarse to fine).

    For each consecutive pair the coarse map is trilinearly interpolated (align_corners=False) to the fine
    map's size; both are softmaxed over all voxels of each sample; the fine one (the teacher) is detached.

    reduction: "sum" (paper): squared Frobenius norm of the difference, i.e. summed over voxels, averaged over
        the batch, summed over pairs. "mean" (released code, ``F.mse_loss``): averaged over batch and voxels,
        summed over pairs; divided by the voxel count of a patch it is too small to train anything
        (docs/model.md).
    Returns a float32 scalar.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f'reduction must be "sum" or "mean", got {reduction!r}')
    with torch.autocast(maps[0].device.type, enabled=False):
        total = maps[0].new_zeros(())
        for coarse, fine in zip(maps[:-1], maps[1:], strict=True):
            if coarse.shape[2:] != fine.shape[2:]:
                coarse = F.interpolate(coarse, size=fine.shape[2:], mode="trilinear", align_corners=False)
            student = _spatial_softmax(coarse)
            teacher = _spatial_softmax(fine.detach())
            squared = (student - teacher).square()
            total = total + (squared.sum(1).mean() if reduction == "sum" else squared.mean())
    return total


def attention_distillation_loss(decoder_features: Sequence[Tensor], p: float = 2, reduction: str = "sum") -> Tensor:
    """L_distill of eq. 6 over decoder features ordered coarse to fine: G = attention_map(A, p) of each
    (:func:`decoder_attention_maps`), then :func:`distillation_from_maps`. Returns a float32 scalar."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f'reduction must be "sum" or "mean", got {reduction!r}')
    return distillation_from_maps(decoder_attention_maps(decoder_features, p), reduction)


def entropies_from_maps(maps: Sequence[Tensor]) -> Tensor:
    """Entropy of each softmaxed attention map, normalised by log(voxels): a float32 tensor, one value per map.

    For each map G: softmax over all voxels, its entropy averaged over the batch and divided by log(D*H*W), so
    1 is a uniform map and 0 a single voxel. No gradients; for logging what the distillation term does.
    """
    values = []
    with torch.no_grad(), torch.autocast(maps[0].device.type if maps else "cpu", enabled=False):
        for attention in maps:
            log_probabilities = torch.log_softmax(attention.detach().float().flatten(1), dim=1)
            entropy = -(log_probabilities.exp() * log_probabilities).sum(1).mean()
            voxels = attention[0].numel()
            values.append(entropy / math.log(voxels) if voxels > 1 else torch.zeros_like(entropy))
    return torch.stack(values) if values else torch.zeros(0)


def attention_entropies(decoder_features: Sequence[Tensor], p: float = 2) -> Tensor:
    """:func:`entropies_from_maps` of the features' attention maps (no gradients)."""
    with torch.no_grad():
        return entropies_from_maps([attention_map(feature.detach(), p) for feature in decoder_features])
