"""Per-epoch record of the loss components (segmentation loss, distillation term, attention-map entropies).

The airway trainers' ``train_step`` returns the loss's components beside nnU-Net's ``loss`` (see
SegmentationWithDistillation); at the end of every training epoch their means over the epoch's iterations,
and under DDP over every rank's iterations (gathered as nnU-Net gathers its loss), are appended to
``loss_components.json`` in the output folder (``.../fold_<n>``): a list of ``{"epoch", "segmentation",
"distillation", "attention_entropy", "topology"}`` (distillation and entropies only with attention distillation,
topology only with a skeleton loss). A resumed run keeps
the entries of the epochs before it; rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist

from nnunet_airway.writing import write_json

LOSS_COMPONENTS_FILE = "loss_components.json"
COMPONENTS = ("segmentation", "distillation", "attention_entropy", "topology")  # the keys train_step may return


def read_loss_components(output_folder: str | Path) -> list[dict[str, Any]]:
    """The records in ``output_folder/loss_components.json``; [] when there is none."""
    path = Path(output_folder) / LOSS_COMPONENTS_FILE
    return json.loads(path.read_text()) if path.exists() else []


def epoch_means(train_outputs: list[dict], gather: bool) -> dict[str, float | list[float]]:
    """Means of the COMPONENTS in ``train_step``'s outputs over the epoch (and every DDP rank when ``gather``):
    a float per scalar component, a list per vector one (one value per decoder scale)."""
    means: dict[str, float | list[float]] = {}
    for name in COMPONENTS:
        if not train_outputs or name not in train_outputs[0]:
            continue
        values = np.stack([np.asarray(output[name], dtype=np.float64) for output in train_outputs])
        if gather:
            everyone: list[np.ndarray | None] = [None] * dist.get_world_size()
            dist.all_gather_object(everyone, values)
            values = np.concatenate(everyone)
        mean = values.mean(axis=0)
        means[name] = mean.tolist() if mean.ndim else float(mean)
    return means


class LossComponentsRecord:
    """Put before nnUNetTrainer in the bases of a trainer whose ``train_step`` returns COMPONENTS."""

    loss_components: list[dict[str, Any]]

    def on_train_start(self) -> None:
        super().on_train_start()
        # a resumed run starts at current_epoch (read from the checkpoint): keep what came before it
        self.loss_components = [r for r in read_loss_components(self.output_folder)
                                if r.get("epoch", 0) < self.current_epoch]

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        means = epoch_means(train_outputs, gather=self.is_ddp)
        if not means:
            return
        self.loss_components = [r for r in getattr(self, "loss_components", []) if r["epoch"] != self.current_epoch]
        self.loss_components.append({"epoch": self.current_epoch, **means})
        if self.local_rank == 0:
            write_json(Path(self.output_folder) / LOSS_COMPONENTS_FILE, self.loss_components)
