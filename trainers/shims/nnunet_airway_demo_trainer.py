"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The demo trainer is defined in ``nnunet_airway.trainers.demo``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.demo import nnUNetTrainerAirwayFRAD_Demo  # noqa: F401 (re-exported for nnU-Net)
