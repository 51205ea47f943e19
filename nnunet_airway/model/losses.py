"""The paper's training loss (Qin et al. 2020, eq. 7 plus alpha * L_distill)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnunet_airway.model.distillation import attention_distillation_loss


class DiceFocalLoss(nn.Module):
    """L = -2 sum(p y) / (sum(p + y) + eps) + mean_x(-(1 - p_t)^gamma log p_t)  [+ alpha * L_distill].

    p is the airway probability, y the binary label; sums run over every voxel of the batch (batch Dice);
    p_t = p where y = 1 and 1 - p elsewhere (focal loss without class weight, averaged over voxels).

    Args:
        alpha: weight of the attention distillation term (paper 0.1); used only when decoder features are given.
        gamma: focal exponent (paper 2).
        eps: Dice denominator guard (paper 1e-7).
        p: exponent of the attention maps (paper 2).
        distillation_reduction: "sum" (paper) or "mean" (released code), see ``attention_distillation_loss``.

    ``forward(logits, target, decoder_features=None)``: logits (N, 2, ...) as nnU-Net produces them (softmax;
    channel 1 is the airway) or (N, 1, ...) (sigmoid); target (N, 1, ...) or (N, ...) with values {0, 1}
    (any dtype). Inside nnU-Net's ``DeepSupervisionWrapper`` it is called as ``loss(logits, target)`` per
    scale; add the distillation once per step with :meth:`distillation` (or pass ``decoder_features``
    when there is a single output). Computed in float32 under autocast; returns a scalar.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        gamma: float = 2.0,
        eps: float = 1e-7,
        p: float = 2,
        distillation_reduction: str = "sum",
    ) -> None:
        super().__init__()
        if alpha < 0 or gamma < 0 or eps < 0:
            raise ValueError(f"alpha, gamma and eps must be >= 0, got alpha={alpha}, gamma={gamma}, eps={eps}")
        if distillation_reduction not in ("sum", "mean"):
            raise ValueError(f'distillation_reduction must be "sum" or "mean", got {distillation_reduction!r}')
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.p = p
        self.distillation_reduction = distillation_reduction

    def forward(self, logits: Tensor, target: Tensor, decoder_features: Sequence[Tensor] | None = None) -> Tensor:
        loss = self.segmentation(logits, target)
        if decoder_features is not None:
            loss = loss + self.distillation(decoder_features)
        return loss

    def distillation(self, decoder_features: Sequence[Tensor]) -> Tensor:
        """alpha * L_distill for decoder features ordered coarse to fine."""
        return self.alpha * attention_distillation_loss(decoder_features, self.p, self.distillation_reduction)

    def segmentation(self, logits: Tensor, target: Tensor) -> Tensor:
        """L_seg of eq. 7 (negative Dice plus focal term)."""
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
            dice = 2 * (prob * y).sum() / (prob.sum() + y.sum() + self.eps)
            log_pt = y * log_p + (1 - y) * log_q
            focal = -((1 - log_pt.exp()).pow(self.gamma) * log_pt).mean()
            return focal - dice
