"""Test-only trainers (never installed): the paper's trainer, seeded and cut to a few short epochs so that the
real ``nnUNetv2_train`` runs in seconds on CPU.

The tests put this folder on PYTHONPATH and ``support/ext`` on nnUNet_extTrainer, the same split as the
package (a shim that re-exports, a class with an importable module path).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from nnunet_airway.trainers.base import DEFAULT_DEVICE
from nnunet_airway.trainers.variants import nnUNetTrainerAirwayFRAD

EPOCHS_VARIABLE = "AIRWAY_TEST_EPOCHS"  # epochs to train
INTERRUPT_VARIABLE = "AIRWAY_TEST_INTERRUPT_AFTER"  # stop the process after this many epochs, as a crash would
INTERRUPTED_EXIT_CODE = 75


class nnUNetTrainerAirwayFRAD_TestTiny(nnUNetTrainerAirwayFRAD):
    """nnUNetTrainerAirwayFRAD with seeds fixed, one torch thread (nnU-Net asks for all cores, which on a
    shared 2-core machine makes every step several times slower), 4 iterations per epoch and a checkpoint
    after every epoch; optionally killed after some epochs to test ``--c``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE) -> None:
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        torch.set_num_threads(1)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get(EPOCHS_VARIABLE, "2"))
        self.num_iterations_per_epoch = 4
        self.num_val_iterations_per_epoch = 1
        self.save_every = 1

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        if self.current_epoch == int(os.environ.get(INTERRUPT_VARIABLE, "-1")):
            raise SystemExit(INTERRUPTED_EXIT_CODE)
