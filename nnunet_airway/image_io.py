"""Image I/O with geometry, grid checks and atomic writes: the one place that talks to SimpleITK.

Arrays are numpy arrays in SimpleITK's index order reversed, i.e. shape (Z, Y, X) for a 3-D image.
Geometry follows ITK: ``spacing`` and ``origin`` in mm in (x, y, z) order, ``direction`` a row-major
3x3 matrix of direction cosines.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_airway.errors import DataError

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie in physical space (ITK conventions, mm, (x, y, z) order)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError(
                f"Geometry needs 3 spacings, 3 origin values and 9 direction cosines, got "
                f"{len(self.spacing)}, {len(self.origin)} and {len(self.direction)}"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in array axis order (Z, Y, X), mm."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def describe(self) -> str:
        return (
            f"spacing {tuple(round(s, 5) for s in self.spacing)}, "
            f"origin {tuple(round(o, 4) for o in self.origin)}, "
            f"direction {tuple(round(d, 4) for d in self.direction)}"
        )


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI/NRRD/MHA/... file into a (Z, Y, X) array and its geometry."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise DataError(f"{path}: cannot be read as an image ({first_line}); replace or remove the file") from exc
    if image.GetDimension() != 3:
        raise DataError(f"{path}: expected a 3-D image, got {image.GetDimension()}-D; give a single-channel 3-D volume")
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A (Z, Y, X) array and geometry as a SimpleITK image."""
    if array.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) array, got shape {array.shape}")
    return geometry.apply_to(sitk.GetImageFromArray(array))


def _default_file_mode() -> int:
    """0666 less the process umask: the mode ``open(path, "w")`` would have given a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the file's suffixes (``.nii.gz``) so writers pick the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_file_mode())  # mkstemp makes files private (0600); give them the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
    """Write a (Z, Y, X) array with its geometry atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(to_sitk(array, geometry), str(tmp), useCompression=compress)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically, indented and with a trailing newline."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def geometry_mismatch(
    shape_a: tuple[int, ...], geom_a: Geometry, shape_b: tuple[int, ...], geom_b: Geometry,
    spacing_tol: float = 1e-3, origin_tol_mm: float = 1e-2, direction_tol: float = 1e-3,
) -> str | None:
    """Describe how two grids differ, or None when they agree within the tolerances.

    ``spacing_tol`` is relative; ``origin_tol_mm`` absolute in mm; ``direction_tol`` absolute on the cosines.
    """
    problems = []
    if tuple(shape_a) != tuple(shape_b):
        problems.append(f"shape {tuple(shape_a)} vs {tuple(shape_b)}")
    sa, sb = np.asarray(geom_a.spacing), np.asarray(geom_b.spacing)
    if np.any(np.abs(sa - sb) > spacing_tol * np.maximum(sa, sb)):
        problems.append(f"spacing {geom_a.spacing} vs {geom_b.spacing}")
    if np.any(np.abs(np.subtract(geom_a.origin, geom_b.origin)) > origin_tol_mm):
        problems.append(f"origin {geom_a.origin} vs {geom_b.origin}")
    if np.any(np.abs(np.subtract(geom_a.direction, geom_b.direction)) > direction_tol):
        problems.append(f"direction {geom_a.direction} vs {geom_b.direction}")
    return "; ".join(problems) if problems else None


def check_same_grid(
    path_a: str | os.PathLike, shape_a: tuple[int, ...], geom_a: Geometry,
    path_b: str | os.PathLike, shape_b: tuple[int, ...], geom_b: Geometry, what_to_do: str, **tolerances: float,
) -> None:
    """Raise DataError naming both files and both geometries when their grids differ."""
    diff = geometry_mismatch(shape_a, geom_a, shape_b, geom_b, **tolerances)
    if diff is not None:
        raise DataError(f"{path_b} is not on the grid of {path_a}: {diff}; {what_to_do}")


def prepare_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Create an output folder; refuse a non-empty existing one unless ``overwrite`` is set.

    With ``overwrite`` the folder is kept and files are replaced one by one as they are rewritten;
    nothing else in it is deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder; choose another --out")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{path}: folder exists and is not empty; choose another --out or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path
