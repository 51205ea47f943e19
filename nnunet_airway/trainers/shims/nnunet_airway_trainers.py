"""Shim that nnU-Net imports as a top-level module from ``$nnUNet_extTrainer``: it only re-exports.

The trainer classes are made in ``nnunet_airway.trainers.variants``; see ``shims/__init__.py`` for why.
"""

from nnunet_airway.trainers.variants import TRAINERS

globals().update(TRAINERS)  # nnU-Net's lookup finds each trainer as an attribute of this module, by name
