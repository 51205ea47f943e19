"""Training progress as data: ``progress.json`` in the fold's output folder, rewritten after every epoch.

The airway trainers write it from nnU-Net's own per-epoch log (the values behind ``progress.png``), so
readers such as the demo never parse console text. The whole history is rewritten each time from the log
that nnU-Net keeps in its checkpoints, so a run resumed with ``--c`` lists every epoch once.

File format (JSON)::

    {"format": 1,
     "epochs": [{"epoch": 0, "train_loss": -0.41, "val_loss": -0.52, "pseudo_dice": [0.61],
                 "mean_pseudo_dice": 0.61, "ema_pseudo_dice": 0.61, "lr": 0.001, "seconds": 12.3}, ...]}

``pseudo_dice`` has one entry per foreground class or region; a value nnU-Net could not compute (NaN) is
null; ``seconds`` is the epoch's wall time. Imports neither nnU-Net nor torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from nnunet_airway.writing import write_json

PROGRESS_FILE = "progress.json"
FORMAT = 1

# nnU-Net's per-epoch log keys, all logged by the end of every epoch
_KEYS = ("train_losses", "val_losses", "dice_per_class_or_region", "mean_fg_dice", "ema_fg_dice", "lrs",
         "epoch_start_timestamps", "epoch_end_timestamps")


class EpochLog(Protocol):
    """What nnU-Net's trainer logger offers: ``get_value(key, step=None)`` is the list of per-epoch values."""

    def get_value(self, key: str, step: Any) -> Any: ...


@dataclass(frozen=True)
class EpochProgress:
    """One finished epoch (losses as the trainer's loss reports them; pseudo Dice in [0, 1]; lr; seconds)."""

    epoch: int
    train_loss: float | None
    val_loss: float | None
    pseudo_dice: list[float | None]
    mean_pseudo_dice: float | None
    ema_pseudo_dice: float | None
    lr: float | None
    seconds: float | None


def _number(value: Any) -> float | None:
    """A plain float for JSON (numpy scalars included); NaN, infinity and None become None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def epochs_from_log(log: EpochLog) -> list[EpochProgress]:
    """Every epoch the log holds all values for, in order."""
    values = {key: list(log.get_value(key, None)) for key in _KEYS}
    finished = min(len(series) for series in values.values())
    epochs = []
    for epoch in range(finished):
        start, end = _number(values["epoch_start_timestamps"][epoch]), _number(values["epoch_end_timestamps"][epoch])
        epochs.append(EpochProgress(
            epoch=epoch,
            train_loss=_number(values["train_losses"][epoch]),
            val_loss=_number(values["val_losses"][epoch]),
            pseudo_dice=[_number(dice) for dice in values["dice_per_class_or_region"][epoch]],
            mean_pseudo_dice=_number(values["mean_fg_dice"][epoch]),
            ema_pseudo_dice=_number(values["ema_fg_dice"][epoch]),
            lr=_number(values["lrs"][epoch]),
            seconds=None if start is None or end is None else round(end - start, 3),
        ))
    return epochs


def write_progress(folder: Path | str, epochs: list[EpochProgress]) -> Path:
    """Write ``folder/progress.json`` atomically (a reader never sees half a file); returns its path."""
    path = Path(folder) / PROGRESS_FILE
    write_json(path, {"format": FORMAT, "epochs": [asdict(e) for e in epochs]}, indent=1)
    return path


def read_progress(folder: Path | str) -> list[EpochProgress]:
    """The epochs in ``folder/progress.json``; [] while the file does not exist yet."""
    path = Path(folder) / PROGRESS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: progress format {data.get('format')!r}, this version reads format {FORMAT}")
    return [EpochProgress(**epoch) for epoch in data["epochs"]]
