"""Turn a label or prediction file's values into an airway mask, refusing values whose meaning is a guess.

A plain label holds 0 (background) and 1 (airway). Anything else (a probability map, a multi-label file,
255 for airway, negative values) is refused unless the user says how to read it: ``threshold`` (airway =
value > threshold, for probability maps) or ``binarize`` (airway = value > 0, for other label values).
"""

from __future__ import annotations

import numpy as np

from nnunet_airway.errors import DataError

MAX_SHOWN = 5


def _examples(values: np.ndarray) -> str:
    odd = values[(values != 0) & (values != 1)]
    distinct = np.unique(odd[: 1 << 20])  # a sample: the message needs examples, not all of them
    shown = ", ".join(f"{v:g}" for v in distinct[:MAX_SHOWN].tolist())
    return shown + (", ..." if len(distinct) > MAX_SHOWN else "")


def is_binary(values: np.ndarray) -> bool:
    """True when every value is 0 or 1 (min/max first: no whole-volume temporary for integer labels)."""
    if values.size == 0 or values.dtype == bool:
        return True
    if values.min() < 0 or values.max() > 1:
        return False
    return values.dtype.kind in "iu" or np.count_nonzero(values) == np.count_nonzero(values == 1)


def airway_mask(values: np.ndarray, name: str, role: str, threshold: float | None = None,
                binarize: bool = False) -> np.ndarray:
    """bool (Z, Y, X) airway mask of ``values``.

    ``role`` is "prediction" or "reference" (for the message). ``threshold`` (predictions only): airway where
    value > threshold. ``binarize``: airway where value > 0. Without either, values other than 0 and 1 are a
    DataError naming the file and both options.
    """
    if values.dtype == bool:
        return values
    if threshold is not None and role == "prediction":
        return values > threshold
    if binarize:
        return values > 0
    if is_binary(values):
        if values.dtype.itemsize == 1 and values.dtype.kind in "iu":  # 0/1 bytes are already a bool mask: no copy
            return values.view(bool)
        return values == 1
    options = ("pass --threshold T if it is a probability map (airway = value > T) or --binarize to make every "
               "value > 0 airway") if role == "prediction" else "pass --binarize to make every value > 0 airway"
    raise DataError(f"{name}: the {role} holds values {_examples(values)} besides 0 and 1, so what is airway "
                    f"would be a guess; {options}")
