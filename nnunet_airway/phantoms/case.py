"""One synthetic case as the generator returns it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnunet_airway.image_io import Geometry


@dataclass(frozen=True)
class Phantom:
    """One synthetic case: CT (int16 HU, (Z, Y, X)), airway lumen label (uint8 0/1, same grid),
    its geometry and the construction truth (the sidecar JSON content)."""

    ct: np.ndarray
    label: np.ndarray
    geometry: Geometry
    truth: dict[str, Any]
