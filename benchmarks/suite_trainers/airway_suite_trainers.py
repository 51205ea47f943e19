"""The GPU suite's training run (never installed): nnUNetTrainerAirwayFRAD cut to 2 short epochs.

gpu_suite.py puts this folder on PYTHONPATH and ``ext`` on nnUNet_extTrainer (a shim that re-exports, so that
DDP workers and data-loader processes can import the class by its module path).
"""

from __future__ import annotations

import os

import torch

from nnunet_airway.trainers.base import DEFAULT_DEVICE
from nnunet_airway.trainers.budget import OptionalValidationMixin
from nnunet_airway.trainers.variants import nnUNetTrainerAirwayFRAD

ITERATIONS_VARIABLE = "AIRWAY_SUITE_ITERATIONS"  # training iterations per epoch (nnU-Net: 250)


class nnUNetTrainerAirwayFRAD_Suite(OptionalValidationMixin, nnUNetTrainerAirwayFRAD):
    """nnUNetTrainerAirwayFRAD with 2 epochs of $AIRWAY_SUITE_ITERATIONS iterations and a fifth as many
    validation iterations; everything else (network, loss, compile, mixed precision, DDP) unchanged. The dry
    run leaves out the fold's validation (NNUNET_AIRWAY_SKIP_VALIDATION=1); on a GPU it runs."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = int(os.environ.get(ITERATIONS_VARIABLE, "50"))
        self.num_val_iterations_per_epoch = max(1, self.num_iterations_per_epoch // 5)
