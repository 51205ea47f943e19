"""The demo's progress bar reads the trainers' progress.json, never nnU-Net's console text."""

from __future__ import annotations

import io
from pathlib import Path

from nnunet_airway.demo.pipeline import TrainingProgress
from nnunet_airway.trainers.progress import EpochProgress, write_progress


def epoch(index: int, dice: float) -> EpochProgress:
    return EpochProgress(epoch=index, train_loss=-0.1 * index, val_loss=-0.2 * index, pseudo_dice=[dice],
                         mean_pseudo_dice=dice, ema_pseudo_dice=dice, lr=1e-3, seconds=2.0)


def test_epoch_budget_bar_follows_the_file_whatever_the_console_says(tmp_path: Path) -> None:
    progress = TrainingProgress(tmp_path, {"NNUNET_AIRWAY_EPOCHS": "5"})
    progress.refresh("2026-01-01 00:00:00.000000: Epoch 3")  # console text is not read
    assert progress.epochs == [] and progress.bar.n == 0 and progress.last is None
    write_progress(tmp_path, [epoch(0, 0.25), epoch(1, 0.5)])
    progress.refresh("anything")
    assert progress.bar.n == 2
    assert progress.last == epoch(1, 0.5)
    progress.close()


def test_time_budget_bar_counts_seconds(tmp_path: Path) -> None:
    write_progress(tmp_path, [epoch(0, 0.25)])
    progress = TrainingProgress(tmp_path, {"NNUNET_AIRWAY_TIME_BUDGET_S": "600"})
    progress.refresh()
    assert 0 <= progress.bar.n < 600 and len(progress.epochs) == 1
    progress.close()


def test_bar_is_drawn_again_only_when_what_it_shows_changes(tmp_path: Path) -> None:
    stream = io.StringIO()
    progress = TrainingProgress(tmp_path, {"NNUNET_AIRWAY_EPOCHS": "5"}, stream=stream)
    for _ in range(50):  # nnU-Net's console lines during one epoch
        progress.refresh("a console line")
    draws = stream.getvalue().count("\r")
    write_progress(tmp_path, [epoch(0, 0.25)])
    progress.refresh("the epoch's last line")
    progress.refresh("the next one")
    assert draws <= 3  # tqdm's own first draw and the bar's first state, not one per line
    assert stream.getvalue().count("\r") == draws + 1
    assert "1/5 epochs" in stream.getvalue().split("\r")[-1]
    progress.close()
