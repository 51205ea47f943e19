"""Image reading with geometry, the checks of a read file, grid checks and output folders (writing is in
nunet_airway/writing.py).

Arrays are numpy arrays in SimpleITK's index order reversed, i.e. shape (Z, Y, X) for a 3-D image.
Geometry follows ITK: ``spacing`` and ``origin`` in mm in (x, y, z) order, ``direction`` a row-major
3x3 matrix of direction cosines.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from isal import igzip, isal_zlib

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


# NIfTI datatype codes of floating-point voxels (float32, float64, complex64, complex128)
_NIFTI_FLOAT_CODES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}
_CHUNK_BYTES = 16 << 20
# ISA-L's gzip reader (python-isal): the same stream checks as the standard library's, decompressing about twice
# as fast; its errors for a damaged or cut-short stream
GZIP_ERRORS = (EOFError, igzip.BadGzipFile, isal_zlib.error)


def _nifti_layout(header: bytes) -> tuple[int, int, int, str | None, str] | None:
    """(data offset, voxel count, bytes per voxel, numpy float dtype or None, byte order) of a NIfTI-1/2 header.

    None when ``header`` does not start like a NIfTI header (the caller then leaves the checks to SimpleITK).
    """
    for order in ("<", ">"):
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            datatype, bitpix = struct.unpack(order + "2h", header[70:74])
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    n_dims = min(max(int(dims[0]), 0), 7)
    voxels = int(np.prod([max(int(d), 1) for d in dims[1:n_dims + 1]], dtype=np.int64)) if n_dims else 1
    return max(offset, 0), voxels, max(int(bitpix), 8) // 8, _NIFTI_FLOAT_CODES.get(int(datatype)), order


def _count_non_finite(chunk: bytes, dtype: np.dtype) -> int:
    values = np.frombuffer(chunk, dtype=dtype)
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def check_image_file(path: str | os.PathLike, check_values: bool = True) -> None:
    """Check what SimpleITK does not: a ``.gz`` stream is whole (read to its end, CRC checked), a NIfTI file
    holds every voxel its header announces and, with ``check_values``, no NaN or infinite voxel.

    SimpleITK fills a truncated NIfTI with zeros and reads NaN and +-inf in NIfTI as 0, so these checks
    work on the file's bytes, streamed in 16 MiB chunks. Raises DataError naming the file and what to do.
    """
    path = Path(path)
    name = path.name.lower()
    is_nifti = name.endswith((".nii", ".nii.gz"))
    if not name.endswith(".gz") and not is_nifti:
        return
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"  # SimpleITK also reads an uncompressed file named .gz
    total = non_finite = 0
    layout = dtype = None
    to_check = 0  # voxel bytes still to look at for NaN/inf
    pending = b""  # voxel bytes not yet checked (a chunk may end inside a voxel)
    try:
        with (igzip.open if compressed else open)(path, "rb") as stream:
            chunk = stream.read(544)
            layout = _nifti_layout(chunk) if is_nifti else None
            if layout is not None and check_values and layout[3] is not None:
                dtype = np.dtype(layout[4] + layout[3])
                to_check = layout[1] * dtype.itemsize
            while chunk:
                if dtype is not None and to_check:
                    start = max(layout[0] - total, 0)
                    part = chunk[start:start + to_check]
                    to_check -= len(part)
                    pending += part
                    usable = len(pending) - len(pending) % dtype.itemsize
                    non_finite += _count_non_finite(pending[:usable], dtype)
                    pending = pending[usable:]
                total += len(chunk)
                chunk = stream.read(_CHUNK_BYTES)
    except GZIP_ERRORS as exc:
        raise DataError(f"{path}: the compressed file is damaged or cut short ({exc}); copy or export it "
                        "again") from exc
    if layout is not None:
        offset, voxels, itemsize, _, _ = layout
        expected = offset + voxels * itemsize
        if total < expected:
            held = max(total - offset, 0) // itemsize
            raise DataError(f"{path}: cut short: holds {held} of the {voxels} voxels its header announces "
                            f"({total} of {expected} bytes); copy or export it again")
    if non_finite:
        raise DataError(f"{path}: {non_finite} voxels are NaN or infinite; fix the image or leave this case out")


# NIfTI datatype code -> numpy dtype (without byte order) of the voxel types read directly (SimpleITK's pixel
# type for them is the same); anything else is left to SimpleITK
_NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                 1280: "u8"}


def _simple_nifti1(header: bytes) -> tuple[int, tuple[int, int, int], np.dtype] | None:
    """(data offset, shape (Z, Y, X), voxel dtype) of a NIfTI-1 header this module reads itself: a single-file
    scalar 3-D volume of a type in _NIFTI_DTYPES, without intensity scaling. None otherwise (SimpleITK then
    reads the file)."""
    for order in ("<", ">"):
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            break
    else:
        return None
    if header[344:348] != b"n+1\x00":  # a single-file NIfTI-1 (ANALYZE headers may be read reoriented)
        return None
    dims = struct.unpack(order + "8h", header[40:56])
    datatype = struct.unpack(order + "h", header[70:72])[0]
    offset = int(struct.unpack(order + "f", header[108:112])[0])
    slope, inter = struct.unpack(order + "2f", header[112:120])
    if dims[0] != 3 or min(dims[1:4]) < 1:
        return None
    if datatype not in _NIFTI_DTYPES or slope not in (0.0, 1.0) or inter != 0.0 or offset < 348:
        return None
    return offset, (int(dims[3]), int(dims[2]), int(dims[1])), np.dtype(order + _NIFTI_DTYPES[datatype])


def _read_nifti_voxels(path: Path) -> np.ndarray | None:
    """The voxels of a simple NIfTI-1 file (see _simple_nifti1) as a native-order (Z, Y, X) array, from one pass
    over the (possibly gzip-compressed) bytes that also checks the stream is whole and holds every voxel (the
    checks of check_image_file; NaN is checked by the caller). None for any other file."""
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    try:
        with (igzip.open if compressed else open)(path, "rb") as stream:
            header = stream.read(352)
            layout = _simple_nifti1(header)
            if layout is None:
                return None
            offset, shape, dtype = layout
            if offset > len(header):
                stream.read(offset - len(header))  # NIfTI extensions between the header and the voxels
            voxels = np.empty(int(np.prod(shape)) * dtype.itemsize, np.uint8)
            head = np.frombuffer(header[offset:offset + voxels.size], np.uint8)
            voxels[:head.size] = head
            filled = head.size
            view = memoryview(voxels)
            while filled < voxels.size:
                n = stream.readinto(view[filled:filled + _CHUNK_BYTES])
                if not n:
                    break
                filled += n
            while stream.read(_CHUNK_BYTES):  # to the end: the gzip trailer (CRC, length) is checked there
                pass
    except GZIP_ERRORS as exc:
        raise DataError(f"{path}: the compressed file is damaged or cut short ({exc}); copy or export it "
                        "again") from exc
    if filled < voxels.size:
        total_voxels = int(np.prod(shape))
        raise DataError(f"{path}: cut short: holds {filled // dtype.itemsize} of the {total_voxels} voxels its "
                        f"header announces ({offset + filled} of {offset + voxels.size} bytes); copy or export it "
                        "again")
    array = voxels.view(dtype).reshape(shape)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _geometry_and_check(path: Path) -> Geometry:
    """The geometry of an image file from its header alone, with read_image's dimension checks."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise DataError(f"{path}: cannot be read as an image ({first_line}); replace or remove the file") from exc
    _check_scalar_3d(path, reader.GetDimension(), reader.GetNumberOfComponents(), reader.GetSize())
    image = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    image.SetSpacing(reader.GetSpacing())
    image.SetOrigin(reader.GetOrigin())
    image.SetDirection(reader.GetDirection())
    return Geometry.of(image)


def _check_scalar_3d(path: Path, dimension: int, components: int, size: tuple[int, ...]) -> None:
    if dimension != 3 or components != 1:
        held = f" with {components} components per voxel (a vector or RGB image)" if components != 1 else ""
        raise DataError(f"{path}: a {dimension}-D image of size {'x'.join(str(n) for n in size)}{held}; give a "
                        "scalar 3-D volume (one channel per file, as nnU-Net takes them)")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, Geometry]:
    """Read a NIfTI/NRRD/MHA/... file into a (Z, Y, X) array and its geometry.

    Every read is checked: a compressed stream must be whole, a NIfTI file must hold every voxel of its
    header, and no voxel may be NaN or infinite (any format). DataError otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file; give the image file")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        array = _read_nifti_voxels(path)  # one pass over the bytes instead of a check and SimpleITK's read
        if array is not None:
            geometry = _geometry_and_check(path)
            if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
                bad = int(array.size - np.count_nonzero(np.isfinite(array)))
                raise DataError(f"{path}: {bad} voxels are NaN or infinite; fix the image or leave this case out")
            return array, geometry
    check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise DataError(f"{path}: cannot be read as an image ({first_line}); replace or remove the file") from exc
    _check_scalar_3d(path, image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize())
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise DataError(f"{path}: {bad} voxels are NaN or infinite; fix the image or leave this case out")
    return array, Geometry.of(image)


def to_sitk(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A (Z, Y, X) array and geometry as a SimpleITK image."""
    if array.ndim != 3:
        raise ValueError(f"expected a (Z, Y, X) array, got shape {array.shape}")
    return geometry.apply_to(sitk.GetImageFromArray(array))


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


def prepare_output_dir(path: str | os.PathLike, overwrite: bool, flag: str = "--out") -> Path:
    """Create an output folder; refuse a non-empty existing one unless ``overwrite`` is set.

    With ``overwrite`` the folder is kept and files are replaced one by one as they are rewritten;
    nothing else in it is deleted.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a folder; choose another {flag}")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise DataError(f"{path}: folder exists and is not empty; choose another {flag} or pass --overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path
