"""The folder that ``nnunet-airway trainer-path`` prints, to be exported as ``nnUNet_extTrainer``.

nnunetv2 (>= 2.8) imports every module in that folder as a *top-level* name and removes it from
``sys.modules`` afterwards. Code living here would therefore break pickling (DDP, data augmentation
workers) and relative imports, so the folder holds only uniquely named modules that re-export the trainer
classes from ``nnunet_airway.trainers``; the classes keep their real, importable module paths.
(nnU-Net's lookup lists modules with pkgutil, which skips this ``__init__``.)
"""

from __future__ import annotations

from pathlib import Path


def shim_folder() -> Path:
    """Absolute path of this folder (inside the installed package or the editable checkout)."""
    return Path(__file__).resolve().parent
