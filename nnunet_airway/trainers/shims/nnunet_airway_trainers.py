"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The trainer classes are defined in ``nnunet_airway.trainers.variants``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.variants import (  # noqa: F401 (re-exported for nnU-Net's lookup by name)
    nnUNetTrainerAirwayAD,
    nnUNetTrainerAirwayAD_mean,
    nnUNetTrainerAirwayAD_mean_w001,
    nnUNetTrainerAirwayAD_w001,
    nnUNetTrainerAirwayBaseline,
    nnUNetTrainerAirwayCSE,
    nnUNetTrainerAirwayFR,
    nnUNetTrainerAirwayFRAD,
    nnUNetTrainerAirwayFRAD_Adam,
    nnUNetTrainerAirwayFRAD_DS,
    nnUNetTrainerAirwayPE,
)
