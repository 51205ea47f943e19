"""progress.json: built from nnU-Net's own per-epoch log, written atomically, read back as it was written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from nnunetv2.training.logging.nnunet_logger import MetaLogger

from nnunet_airway.trainers.progress import (
    PROGRESS_FILE,
    EpochProgress,
    epochs_from_log,
    read_progress,
    write_progress,
)


def log_epoch(logger: MetaLogger, epoch: int, dice: list[float], finished: bool = True) -> None:
    """What nnUNetTrainer logs in one epoch, with the numpy types it logs them as."""
    logger.log("epoch_start_timestamps", 100.0 + 10 * epoch, epoch)
    logger.log("lrs", 0.01 / (epoch + 1), epoch)
    logger.log("train_losses", np.float32(-0.25 * epoch), epoch)
    if finished:
        logger.log("mean_fg_dice", np.mean(dice), epoch)  # also logs ema_fg_dice
        logger.log("dice_per_class_or_region", [np.float32(d) for d in dice], epoch)
        logger.log("val_losses", np.float64(-0.5 * epoch), epoch)
        logger.log("epoch_end_timestamps", 100.0 + 10 * epoch + 7.5, epoch)


@pytest.fixture()
def logger(tmp_path: Path) -> MetaLogger:
    logger = MetaLogger(str(tmp_path), resume=False)
    log_epoch(logger, 0, [0.5])
    log_epoch(logger, 1, [float("nan")])
    log_epoch(logger, 2, [0.75], finished=False)  # an epoch still running
    return logger


def test_finished_epochs_become_plain_numbers_with_nan_as_none(logger: MetaLogger) -> None:
    first, second = epochs_from_log(logger)
    assert first == EpochProgress(epoch=0, train_loss=0.0, val_loss=0.0, pseudo_dice=[0.5], mean_pseudo_dice=0.5,
                                  ema_pseudo_dice=0.5, lr=0.01, seconds=7.5)
    assert second.epoch == 1 and second.train_loss == -0.25 and second.val_loss == -0.5
    assert second.pseudo_dice == [None] and second.mean_pseudo_dice is None
    assert second.lr == pytest.approx(0.005)
    assert all(type(value) in (int, float, list) for value in vars(first).values())


def test_written_file_is_json_and_reads_back(logger: MetaLogger, tmp_path: Path) -> None:
    epochs = epochs_from_log(logger)
    path = write_progress(tmp_path, epochs)
    assert path == tmp_path / PROGRESS_FILE
    data = json.loads(path.read_text())  # strict JSON: no NaN
    assert data["format"] == 1 and [e["epoch"] for e in data["epochs"]] == [0, 1]
    assert read_progress(tmp_path) == epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == [PROGRESS_FILE]  # no temporary file left


def test_rewriting_replaces_the_history(logger: MetaLogger, tmp_path: Path) -> None:
    epochs = epochs_from_log(logger)
    write_progress(tmp_path, epochs)
    write_progress(tmp_path, epochs[:1])
    assert read_progress(tmp_path) == epochs[:1]


def test_no_file_yet_is_no_epochs_and_another_format_is_refused(tmp_path: Path) -> None:
    assert read_progress(tmp_path) == []
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"format": 2, "epochs": []}))
    with pytest.raises(ValueError, match="format 2"):
        read_progress(tmp_path)
