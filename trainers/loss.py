"""The airway trainers' loss: Dice + focal on the logits plus the weighted attention-distillation term."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from nnunet_airway.model.distillation import attention_distillation_loss


class SegmentationWithDistillation(nn.Module):
    """``loss(output, target) = segmentation(output, target) + weight * L_distill(decoder features)``.

    nnU-Net calls the loss as ``loss(output, target)`` right after the network's forward pass;
    ``decoder_features`` is then called to fetch that pass's decoder outputs (coarse to fine), e.g. FRADUNet's
    ``pop_decoder_features``. The distillation term is computed in float32 (attention_distillation_loss) and
    added once, also when ``segmentation`` is nnU-Net's DeepSupervisionWrapper. Without gradients (nnU-Net's
    validation step) the network keeps no features and the loss is the segmentation loss alone.
    """

    def __init__(self, segmentation: nn.Module, distillation_weight: float,
                 decoder_features: Callable[[], Sequence[torch.Tensor]] | None = None) -> None:
        super().__init__()
        if distillation_weight < 0:
            raise ValueError(f"distillation_weight must be >= 0, got {distillation_weight}")
        if distillation_weight > 0 and decoder_features is None:
            raise ValueError("distillation_weight > 0 needs decoder_features, a callable returning the decoder outputs")
        self.segmentation = segmentation
        self.distillation_weight = float(distillation_weight)
        self.decoder_features = decoder_features

    def forward(self, output, target) -> torch.Tensor:
        loss = self.segmentation(output, target)
        if self.distillation_weight == 0 or not torch.is_grad_enabled():
            return loss
        return loss + self.distillation_weight * attention_distillation_loss(self.decoder_features())
