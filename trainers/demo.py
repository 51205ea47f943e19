"""``nnUNetTrainerAirwayFRAD_Demo``: the paper's FRAD trainer on a wall-clock budget, for ``nnunet-airway demo``.

Short epochs so progress shows often, a poly learning-rate decay over the *time* budget instead of over a
fixed number of epochs, and a normal end of training (final checkpoint, nnU-Net's validation) once the
budget ``$NNUNET_AIRWAY_TIME_BUDGET_S`` (seconds, default 300) is spent. A resumed run (``--c``) gets the
whole budget again.
"""

from __future__ import annotations

import os
from time import perf_counter

from .variants import nnUNetTrainerAirwayFRAD

TIME_BUDGET_VARIABLE = "NNUNET_AIRWAY_TIME_BUDGET_S"


class TimeBudgetSpent(Exception):
    """Raised at the end of the epoch in which the budget ran out; ends training normally."""


class nnUNetTrainerAirwayFRAD_Demo(nnUNetTrainerAirwayFRAD):
    num_iterations = 20
    num_validation_iterations = 4

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_budget_s = float(os.environ.get(TIME_BUDGET_VARIABLE, "300"))
        self.num_iterations_per_epoch = self.num_iterations
        self.num_val_iterations_per_epoch = self.num_validation_iterations
        self.save_every = 1  # a checkpoint every epoch, so an interrupted demo resumes where it was
        self._started: float | None = None

    def _spent_fraction(self) -> float:
        return 0.0 if self._started is None else (perf_counter() - self._started) / self.time_budget_s

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        decayed = self.initial_lr * max(1.0 - self._spent_fraction(), 0.0) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = decayed

    def on_epoch_end(self) -> None:
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
