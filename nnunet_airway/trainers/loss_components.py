"""Per-epoch record of the loss components (segmentation loss, distillation term, attention-map entropies).

The airway trainers write ``loss_components.json`` into their output folder (``.../fold_<n>``) after every
training epoch: a list of ``{"epoch", "segmentation", "distillation", "attention_entropy"}`` (the last two only
with attention distillation), each the mean over that epoch's training iterations as recorded by
SegmentationWithDistillation. A resumed run keeps the entries of the epochs before it. Under DDP each rank
records its own iterations; rank 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnunet_airway.image_io import write_json

LOSS_COMPONENTS_FILE = "loss_components.json"


def read_loss_components(output_folder: str | Path) -> list[dict[str, Any]]:
    """The records in ``output_folder/loss_components.json``; [] when there is none."""
    path = Path(output_folder) / LOSS_COMPONENTS_FILE
    return json.loads(path.read_text()) if path.exists() else []


class LossComponentsRecord:
    """Put before nnUNetTrainer in the bases of a trainer whose loss has ``pop_mean_components``."""

    loss_components: list[dict[str, Any]]

    def on_train_start(self) -> None:
        super().on_train_start()
        # a resumed run starts at current_epoch (read from the checkpoint): keep what came before it
        self.loss_components = [r for r in read_loss_components(self.output_folder)
                                if r.get("epoch", 0) < self.current_epoch]
        loss = getattr(self.loss, "_orig_mod", self.loss)  # under torch.compile
        if hasattr(loss, "pop_mean_components"):
            loss.pop_mean_components()  # nothing from before training (e.g. a test step) counts

    def on_train_epoch_end(self, train_outputs: list[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        loss = getattr(self.loss, "_orig_mod", self.loss)
        means = loss.pop_mean_components() if hasattr(loss, "pop_mean_components") else {}
        if not means:
            return
        self.loss_components = [r for r in getattr(self, "loss_components", []) if r["epoch"] != self.current_epoch]
        self.loss_components.append({"epoch": self.current_epoch, **means})
        if self.local_rank == 0:
            write_json(Path(self.output_folder) / LOSS_COMPONENTS_FILE, self.loss_components)
