"""Trainers on a fixed budget, for the demo and the thin-branch benchmark: ``nnUNetTrainerAirway*_Budget``.

Environment variables (read when the trainer is built):
- ``NNUNET_AIRWAY_TIME_BUDGET_S``: stop after the epoch in which this many seconds of training were spent;
  the learning rate then decays poly(0.9) over the *time* budget instead of over nnU-Net's 1000 epochs.
- ``NNUNET_AIRWAY_EPOCHS``: train exactly this many epochs (nnU-Net's poly schedule over them); use this to
  compare trainers at the same iteration budget. Exactly one of the two must be set.
- ``NNUNET_AIRWAY_LR`` (default 1e-3): the optimiser is the paper's Adam (betas 0.5, 0.999) at a higher rate
  than its 2e-4; on short budgets it gets further than nnU-Net's SGD (the comparison is in docs/trainers.md).
- ``NNUNET_AIRWAY_ITERATIONS_PER_EPOCH`` (default 20) and ``NNUNET_AIRWAY_SEED`` (default 0): short epochs so
  progress shows often; seeded torch, numpy and random for repeatable runs (with nnUNet_n_proc_DA=0).
- ``NNUNET_AIRWAY_SKIP_VALIDATION=1``: leave out nnU-Net's validation of the fold after training (the demo and
  the benchmarks predict and score their own held-out cases; on a 2-core CPU the validation took 17-20 s,
  mostly its worker pools starting). Unset, nnU-Net validates as always.
- ``NNUNET_AIRWAY_KEEP_CHECKPOINTS`` (e.g. ``100,300,1000``): after the epoch that completes each of these
  training iterations, also keep the weights as ``checkpoint_iter_<N>.pth`` (for ``nnUNetv2_predict -chk``), so
  one run gives a learning curve. Each must be a multiple of the iterations per epoch.
Test-time mirroring is off (nnU-Net's final validation and nnUNetv2_predict then run one pass per window
instead of eight, which matters on a CPU). A checkpoint is written after every epoch so an interrupted run
resumes with ``--c`` (a resumed time-budget run gets its whole budget again).
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Callable
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.trainers.base import DEFAULT_DEVICE, PAPER_ADAM_BETAS
from nnunet_airway.trainers.budget_variables import (
    EPOCHS_VARIABLE,
    ITERATIONS_VARIABLE,
    KEEP_CHECKPOINTS_VARIABLE,
    LR_VARIABLE,
    SEED_VARIABLE,
    SKIP_VALIDATION_VARIABLE,
    TIME_BUDGET_VARIABLE,
)
from nnunet_airway.trainers.declarations import DECLARATIONS, NNUNET_DEFAULT_BUDGET
from nnunet_airway.trainers.variants import TRAINERS


class TimeBudgetPolyLR(PolyLRScheduler):
    """nnU-Net's poly(0.9) decay over the share of a time budget spent instead of over epochs:
    lr = initial_lr * (1 - spent_fraction())^0.9, clipped at 0. nnU-Net calls ``step(epoch)`` at the start of
    every epoch and then logs the rate, so its log and progress plot show the rate actually used."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float,
                 spent_fraction: Callable[[], float], exponent: float = 0.9) -> None:
        self.spent_fraction = spent_fraction
        super().__init__(optimizer, initial_lr, max_steps=1, exponent=exponent)

    def step(self, current_step: int | None = None) -> None:
        # nnU-Net's formula with max_steps=1, fed the share of the budget spent instead of the epoch
        super().step(min(max(self.spent_fraction(), 0.0), 1.0))


class TimeBudgetSpent(Exception):
    """Raised at the end of the epoch in which the time budget ran out; ends training normally."""


def _number_from_environment(name: str, default: str | None, parse: Callable[[str], float | int]):
    """The variable through ``parse`` (an argument type of nnunet_airway.argument_types), None when unset and
    without default; a RuntimeError naming the variable otherwise (a NaN time budget trained forever)."""
    text = os.environ.get(name, default)
    if text is None:
        return None
    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise RuntimeError(f"{name}={text!r}: {exc}") from None


def checkpoint_name(iterations: int) -> str:
    """The file name of the checkpoint kept after ``iterations`` training iterations."""
    return f"checkpoint_iter_{iterations}.pth"


def kept_checkpoints_from_environment(iterations_per_epoch: int) -> dict[int, int]:
    """{epochs done: iterations} for NNUNET_AIRWAY_KEEP_CHECKPOINTS (comma-separated iteration counts, each a
    positive multiple of ``iterations_per_epoch``); empty when unset; a RuntimeError says what is wrong."""
    text = os.environ.get(KEEP_CHECKPOINTS_VARIABLE, "").strip()
    kept: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            iterations = int_at_least(1)(item)
        except argparse.ArgumentTypeError as exc:
            raise RuntimeError(f"{KEEP_CHECKPOINTS_VARIABLE}={text!r}: {item!r}: {exc}") from None
        if iterations % iterations_per_epoch:
            raise RuntimeError(f"{KEEP_CHECKPOINTS_VARIABLE}={text!r}: {iterations} is not a multiple of the "
                               f"{iterations_per_epoch} iterations per epoch ({ITERATIONS_VARIABLE}); checkpoints "
                               f"are written at the end of an epoch")
        kept[iterations // iterations_per_epoch] = iterations
    return kept


def budget_from_environment() -> tuple[float | None, int | None]:
    """(time budget in s, epochs): exactly one is set, finite and positive; a RuntimeError says what to export
    otherwise."""
    time_budget = _number_from_environment(TIME_BUDGET_VARIABLE, None, positive_float("s"))
    epochs = _number_from_environment(EPOCHS_VARIABLE, None, int_at_least(1))
    if (time_budget is None) == (epochs is None):
        raise RuntimeError(f"the *_Budget trainers need exactly one of {TIME_BUDGET_VARIABLE} (seconds) or "
                           f"{EPOCHS_VARIABLE} (epochs) in the environment, e.g. export {EPOCHS_VARIABLE}=50")
    return time_budget, epochs


class OptionalValidationMixin:
    """Put before an nnU-Net trainer class: nnU-Net's validation of the fold after training is left out when
    ``NNUNET_AIRWAY_SKIP_VALIDATION=1`` (for pipelines that score their own held-out cases)."""

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        if os.environ.get(SKIP_VALIDATION_VARIABLE) == "1":
            self.print_to_log_file(f"final validation left out ({SKIP_VALIDATION_VARIABLE}=1)",
                                   also_print_to_console=True)
            return
        super().perform_actual_validation(save_probabilities)


class TrainingBudgetMixin(OptionalValidationMixin):
    """Put before an airway trainer class: ``class X(TrainingBudgetMixin, nnUNetTrainerAirwayFRAD)``."""

    # nnU-Net records its __init__ arguments by name (inspect.signature), so the signature is spelled out
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.time_budget_s, epochs = budget_from_environment()
        self.num_epochs = epochs if epochs is not None else 100_000  # the time budget ends training first
        self.num_iterations_per_epoch = _number_from_environment(ITERATIONS_VARIABLE, "20", int_at_least(1))
        self.num_val_iterations_per_epoch = max(1, self.num_iterations_per_epoch // 5)
        self.kept_checkpoints = kept_checkpoints_from_environment(self.num_iterations_per_epoch)
        self.save_every = 1
        self.initial_lr = _number_from_environment(LR_VARIABLE, "1e-3", positive_float())
        seed = _number_from_environment(SEED_VARIABLE, "0", int_at_least(0))
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self._started: float | None = None

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, betas=PAPER_ADAM_BETAS)
        if self.time_budget_s is not None:
            return optimizer, TimeBudgetPolyLR(optimizer, self.initial_lr, self._spent_fraction)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None  # training augmentation still mirrors
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def _spent_fraction(self) -> float:
        if self.time_budget_s is None or self._started is None:
            return 0.0
        return (perf_counter() - self._started) / self.time_budget_s

    def on_epoch_end(self) -> None:
        iterations = self.kept_checkpoints.get(self.current_epoch + 1)  # before nnU-Net counts the epoch done
        if iterations is not None and self.local_rank == 0:
            path = Path(self.output_folder) / checkpoint_name(iterations)
            partial = path.with_name(path.name + ".partial")
            self.save_checkpoint(str(partial))
            if partial.exists():  # absent when checkpointing is disabled
                os.replace(partial, path)
        super().on_epoch_end()
        if self._spent_fraction() >= 1.0:
            raise TimeBudgetSpent

    def run_training(self) -> None:
        self._started = perf_counter()
        try:
            super().run_training()
        except TimeBudgetSpent:
            self.print_to_log_file(f"time budget of {self.time_budget_s:.0f} s spent after epoch "
                                   f"{self.current_epoch - 1}; finishing", also_print_to_console=True)
            self.on_train_end()


class nnUNetTrainer_Budget(TrainingBudgetMixin, nnUNetTrainer):
    """nnU-Net's own default trainer on the same budget as the airway rows (the 'nnU-Net default' row).

    Its network (PlainConvUNet from the plans), loss (Dice + cross-entropy with deep supervision), patch
    sampling and augmentation are nnU-Net's; optimiser, schedule, iterations, seeding and inference mirroring
    are the budget's (TrainingBudgetMixin), as for every airway budget trainer, so only network and loss differ.
    """


def _budget_class(name: str, trainer: type) -> type:
    return type(name, (TrainingBudgetMixin, trainer), {
        "__module__": __name__, "__qualname__": name,
        "__doc__": f"{trainer.__name__} on a time or epoch budget (TrainingBudgetMixin)."})


# the *_Budget twin of every declaration that has one (declarations.py), and nnU-Net's own default on the budget
BUDGET_TRAINERS: dict[str, type] = {
    NNUNET_DEFAULT_BUDGET: nnUNetTrainer_Budget,
    **{d.budget_name: _budget_class(d.budget_name, TRAINERS[d.name]) for d in DECLARATIONS if d.has_budget_twin},
}
globals().update(BUDGET_TRAINERS)  # importable by name, as the classes of variants.py are
