"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The budget trainers are made in ``nnunet_airway.trainers.budget``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.budget import BUDGET_TRAINERS

globals().update(BUDGET_TRAINERS)  # nnU-Net's lookup finds each trainer as an attribute of this module, by name
