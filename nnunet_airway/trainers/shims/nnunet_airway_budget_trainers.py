"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The budget trainers are defined in ``nnunet_airway.trainers.budget``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.budget import (  # noqa: F401 (re-exported for nnU-Net's lookup by name)
    nnUNetTrainer_Budget,
    nnUNetTrainerAirwayAD_Budget,
    nnUNetTrainerAirwayAD_mean_Budget,
    nnUNetTrainerAirwayAD_mean_w001_Budget,
    nnUNetTrainerAirwayAD_w001_Budget,
    nnUNetTrainerAirwayBaseline_Budget,
    nnUNetTrainerAirwayCSE_Budget,
    nnUNetTrainerAirwayFR_Budget,
    nnUNetTrainerAirwayFRAD_Budget,
    nnUNetTrainerAirwayPE_Budget,
)
