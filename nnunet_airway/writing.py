"""Every file the package writes goes through here: atomic (a temporary file beside the target, renamed onto
it only when complete), verified (the byte count, or an image that reads back with its shape), and with the
mode a plain ``open(path, "w")`` would give, read once at import instead of changing the process umask at every
write (which is not thread-safe).

``atomic_path`` is the mechanism; ``write_bytes``, ``write_json`` and ``write_image`` use it. A failed or
interrupted write leaves the target as it was (an earlier file stays whole) and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry, check_image_file, to_sitk

WRITE_ADVICE = "check free space and the file size limit (ulimit -f), then run again"


def _process_umask() -> int:
    """The umask, from /proc where the system has it (no change to the process), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # once, at import, before any thread of this process writes
    os.umask(umask)
    return umask


NEW_FILE_MODE = 0o666 & ~_process_umask()  # the mode open(path, "w") gives a new file


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the file's suffixes (``.nii.gz``) so writers pick the right format. Without an
    error the temporary file gets NEW_FILE_MODE (mkstemp makes it private) and replaces ``path`` in one rename
    (a file replaced gets that mode too, not the mode it had).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, NEW_FILE_MODE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_verified_bytes(tmp: Path, data: bytes, target: str | os.PathLike) -> None:
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if tmp.stat().st_size != len(data):
        raise DataError(f"{target}: writing failed ({tmp.stat().st_size} of {len(data)} bytes written); "
                        f"{WRITE_ADVICE}")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes atomically; the size is verified before the rename."""
    with atomic_path(path) as tmp:
        _write_verified_bytes(tmp, data, path)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write JSON atomically, indented and with a trailing newline; the size is verified before the rename."""
    return write_bytes(path, (json.dumps(data, indent=indent) + "\n").encode())


def verify_image_file(path: str | os.PathLike, shape_zyx: tuple[int, ...], target: str | os.PathLike) -> None:
    """Check a just-written image before it gets its final name: not empty, the compressed stream whole, every
    voxel present, and a header that reads back with ``shape_zyx``. DataError naming ``target`` otherwise."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"{target}: writing failed (an empty file came out); {WRITE_ADVICE}")
    try:
        check_image_file(path, check_values=False)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except (DataError, RuntimeError) as exc:
        raise DataError(f"{target}: writing failed, the written file does not read back ({exc}); "
                        f"{WRITE_ADVICE}") from exc
    written = tuple(reversed(reader.GetSize()))
    if written != tuple(shape_zyx):
        raise DataError(f"{target}: writing failed, the written header says shape {written}, not "
                        f"{tuple(shape_zyx)}; {WRITE_ADVICE}")


def write_verified_image(tmp: str | os.PathLike, array: np.ndarray, geometry: Geometry, compress: bool,
                         target: str | os.PathLike) -> None:
    """Write and verify an image at ``tmp`` (a temporary name for ``target``, which error messages name)."""
    try:
        sitk.WriteImage(to_sitk(array, geometry), str(tmp), useCompression=compress)
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        raise DataError(f"{target}: writing failed ({last}); check that the folder is writable and has free "
                        "space") from exc
    verify_image_file(tmp, array.shape, target)


def write_image(path: str | os.PathLike, array: np.ndarray, geometry: Geometry, compress: bool = True) -> Path:
    """Write a (Z, Y, X) array with its geometry atomically: temporary file, verified, then renamed."""
    with atomic_path(path) as tmp:
        write_verified_image(tmp, array, geometry, compress, target=path)
    return Path(path)
