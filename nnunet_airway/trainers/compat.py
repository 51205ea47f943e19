"""Which nnU-Net v2 this plugin runs on, checked without importing nnU-Net (or torch)."""

from __future__ import annotations

import re
from importlib import metadata

from nnunet_airway.errors import DataError

# 2.8.0 added the nnUNet_extTrainer lookup that the shim folder relies on.
MINIMUM_NNUNETV2 = (2, 8)
INSTALL_HINT = "pip install 'nnunetv2>=2.8,<2.9'"


def parse_major_minor(version: str) -> tuple[int, int]:
    """``"2.8.1"`` -> ``(2, 8)``; ``"2.10.0.dev3"`` -> ``(2, 10)``. Raises ValueError on anything else."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"cannot read a version number from {version!r}")
    return int(match.group(1)), int(match.group(2))


def require_nnunetv2(installed: str | None = None) -> str:
    """Return the installed nnunetv2 version; raise DataError saying what to install when it is absent or older
    than 2.8. ``installed`` overrides the lookup (for tests)."""
    if installed is None:
        try:
            installed = metadata.version("nnunetv2")
        except metadata.PackageNotFoundError:
            raise DataError(f"nnunetv2 is not installed in this Python environment; {INSTALL_HINT}") from None
    if parse_major_minor(installed) < MINIMUM_NNUNETV2:
        raise DataError(
            f"nnunetv2 {installed} is installed but nnunet-airway needs nnunetv2 >= 2.8 (its trainers are found "
            f"through the nnUNet_extTrainer variable, which 2.8.0 introduced); {INSTALL_HINT}"
        )
    return installed
