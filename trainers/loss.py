"""The airway trainers' loss: Dice + focal on the logits plus the weighted attention-distillation term."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnunet_airway.model.distillation import attention_distillation_loss, attention_entropies


class SegmentationWithDistillation(nn.Module):
    """``loss(output, target) = segmentation(output, target) + weight * L_distill(decoder features)``.

    nnU-Net calls the loss as ``loss(output, target)`` right after the network's forward pass;
    ``decoder_features`` is then called to fetch that pass's decoder outputs (coarse to fine), e.g. FRADUNet's
    ``pop_decoder_features``. The distillation term is computed in float32 (attention_distillation_loss, with
    ``reduction`` "sum" as in the paper or "mean" as in the released code) and added once, also when
    ``segmentation`` is nnU-Net's DeepSupervisionWrapper. Without gradients (nnU-Net's validation step) the
    network keeps no features and the loss is the segmentation loss alone.

    Every training call (with gradients) also records its components: ``last_components`` holds the last
    call's, :meth:`pop_mean_components` the means since the previous pop (see there).
    """

    def __init__(self, segmentation: nn.Module, distillation_weight: float,
                 decoder_features: Callable[[], Sequence[torch.Tensor]] | None = None,
                 reduction: str = "sum") -> None:
        super().__init__()
        if distillation_weight < 0:
            raise ValueError(f"distillation_weight must be >= 0, got {distillation_weight}")
        if distillation_weight > 0 and decoder_features is None:
            raise ValueError("distillation_weight > 0 needs decoder_features, a callable returning the decoder outputs")
        if reduction not in ("sum", "mean"):
            raise ValueError(f'reduction must be "sum" or "mean", got {reduction!r}')
        self.segmentation = segmentation
        self.distillation_weight = float(distillation_weight)
        self.decoder_features = decoder_features
        self.reduction = reduction
        self.last_components: dict[str, torch.Tensor] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._calls = 0

    def forward(self, output, target) -> torch.Tensor:
        loss = self.segmentation(output, target)
        if not torch.is_grad_enabled():
            return loss
        if self.distillation_weight == 0:
            self._record({"segmentation": loss})
            return loss
        features = self.decoder_features()
        distillation = attention_distillation_loss(features, reduction=self.reduction)
        self._record({"segmentation": loss, "distillation": distillation,
                      "attention_entropy": attention_entropies(features)})
        return loss + self.distillation_weight * distillation

    @torch.compiler.disable
    def _record(self, components: dict[str, torch.Tensor]) -> None:
        self.last_components = {name: value.detach().float() for name, value in components.items()}
        for name, value in self.last_components.items():
            self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
        self._calls += 1

    def pop_mean_components(self) -> dict[str, float | list[float]]:
        """Means over the training calls since the last pop, then forgets them: ``segmentation`` (the
        segmentation loss), and with distillation ``distillation`` (the unweighted term) and
        ``attention_entropy`` (per decoder scale, coarse to fine: see attention_entropies). {} if none."""
        if self._calls == 0:
            return {}
        means = {name: (total / self._calls).cpu() for name, total in self._sums.items()}
        self._sums, self._calls = {}, 0
        return {name: value.tolist() if value.dim() else float(value) for name, value in means.items()}
