"""nnunet-airway: bronchiole-sensitive airway segmentation for nnU-Net v2 (Qin et al., MICCAI 2020).

The model API is exported lazily (PEP 562) so that ``nnunet_airway.evaluation``, the converters and
the phantom generator can be imported without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY_EXPORTS: dict[str, str] = {
    "FeatureRecalibration": "nnunet_airway.model.recalibration",
    "ProjectExcite": "nnunet_airway.model.recalibration",
    "ChannelSE": "nnunet_airway.model.recalibration",
    "attention_map": "nnunet_airway.model.distillation",
    "attention_distillation_loss": "nnunet_airway.model.distillation",
    "DiceFocalLoss": "nnunet_airway.model.losses",
    "SegmentationWithDistillation": "nnunet_airway.model.losses",
    "FRADUNet": "nnunet_airway.model.unet",
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_EXPORTS:
        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nnunet_airway' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
