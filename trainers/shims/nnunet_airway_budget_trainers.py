"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The budget trainers are defined in ``nnunet_airway.trainers.budget``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.budget import (  # noqa: F401 (re-exported for nnU-Net's lookup by name)
    nnUNetTrainerAirwayAD_Budget,
    nnUNetTrainerAirwayBaseline_Budget,
    nnUNetTrainerAirwayFR_Budget,
    nnUNetTrainerAirwayFRAD_Budget,
)
