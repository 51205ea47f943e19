"""Geometry and grid checks of nnunet_airway.image_io, and the atomic writes of nnunet_airway.writing."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry, check_same_grid, geometry_mismatch, prepare_output_dir, read_image
from nnunet_airway.writing import NEW_FILE_MODE, atomic_path, write_image, write_json

GEOMETRY = Geometry((0.7, 0.8, 1.25), (-10.0, 20.0, 30.5), (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))


def test_image_round_trip_keeps_voxels_and_geometry(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    write_image(tmp_path / "a.nii.gz", array, GEOMETRY)
    read, geometry = read_image(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(read, array)
    assert geometry_mismatch(read.shape, geometry, array.shape, GEOMETRY) is None
    assert geometry.spacing_zyx == pytest.approx((1.25, 0.8, 0.7))


def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path: Path) -> None:
    (tmp_path / "plain.json").write_text("{}")  # what open(path, "w") gives under this process's umask
    write_json(tmp_path / "a.json", {"x": 1})
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == NEW_FILE_MODE
    assert mode & 0o444 == 0o444 & NEW_FILE_MODE and mode != 0o600


def test_writing_never_touches_the_process_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the umask at write time races with every other thread that creates a file."""
    def no_umask(mask: int) -> int:
        raise AssertionError("os.umask called while writing")

    monkeypatch.setattr(os, "umask", no_umask)
    write_json(tmp_path / "a.json", {"x": 1})
    write_image(tmp_path / "a.nii.gz", np.zeros((2, 3, 4), np.uint8), GEOMETRY)
    assert (tmp_path / "a.json").is_file() and (tmp_path / "a.nii.gz").is_file()


def test_atomic_path_leaves_nothing_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    target.write_text("the user's file")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nii.gz"]


@pytest.mark.parametrize(
    ("shape_b", "geometry_b", "expected"),
    [
        ((4, 5, 6), GEOMETRY, None),
        ((4, 5, 7), GEOMETRY, "shape"),
        ((4, 5, 6), Geometry((0.7, 0.8, 1.5), GEOMETRY.origin, GEOMETRY.direction), "spacing"),
        ((4, 5, 6), Geometry(GEOMETRY.spacing, (-10.0, 20.0, 31.5), GEOMETRY.direction), "origin"),
        ((4, 5, 6), Geometry(GEOMETRY.spacing, GEOMETRY.origin), "direction"),
    ],
)
def test_geometry_mismatch_names_what_differs(shape_b, geometry_b, expected) -> None:
    diff = geometry_mismatch((4, 5, 6), GEOMETRY, shape_b, geometry_b)
    assert diff is None if expected is None else diff.startswith(expected)


def test_check_same_grid_names_both_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"b\.nii\.gz is not on the grid of .*a\.nii\.gz: shape"):
        check_same_grid("a.nii.gz", (4, 5, 6), GEOMETRY, "b.nii.gz", (4, 5, 7), GEOMETRY, "resample it")


def test_read_image_missing_and_corrupt_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot be read"):
        read_image(tmp_path / "corrupt.nii.gz")


def test_prepare_output_dir_refuses_a_non_empty_folder_without_overwrite(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="--overwrite"):
        prepare_output_dir(tmp_path, overwrite=False)
    prepare_output_dir(tmp_path, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


# --- every read checked, every write verified (issue 14) ---

def _incompressible(shape=(8, 40, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, size=shape).astype(np.int16)


@pytest.mark.parametrize("name", ["cut.nii.gz", "cut.nii"])
def test_a_truncated_nifti_is_refused_not_filled_with_zeros(tmp_path: Path, name: str) -> None:
    write_image(tmp_path / name, _incompressible(), GEOMETRY, compress=name.endswith(".gz"))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.nii(\.gz)?: .*(cut short|damaged)"):
        read_image(tmp_path / name)


def test_a_gzip_stream_cut_short_after_the_voxels_is_still_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "a.nii.gz", _incompressible(), GEOMETRY)
    data = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "a.nii.gz").write_bytes(data[:-4])  # only the CRC trailer's size field is missing
    with pytest.raises(DataError, match="damaged or cut short"):
        read_image(tmp_path / "a.nii.gz")


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii", "nan.mha", "nan.nrrd"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_found_in_every_format(tmp_path: Path, name: str, bad: float) -> None:
    array = np.zeros((4, 5, 6), dtype=np.float32)
    array[1, 2, 3] = bad
    array[3, 4, 5] = bad
    write_image(tmp_path / name, array, GEOMETRY)
    with pytest.raises(DataError, match=r"2 voxels are NaN or infinite"):
        read_image(tmp_path / name)


def test_float64_nifti_without_nan_reads(tmp_path: Path) -> None:
    array = np.linspace(-1, 1, 4 * 5 * 6).reshape(4, 5, 6)
    write_image(tmp_path / "a.nii.gz", array, GEOMETRY)
    np.testing.assert_allclose(read_image(tmp_path / "a.nii.gz")[0], array)


def test_read_image_of_a_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)


_SHORT_WRITE = """
import sys
import numpy as np
import SimpleITK as sitk
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image
array = np.random.default_rng(0).integers(-1000, 1000, size=(40, 64, 64)).astype(np.int16)
try:
    write_image(sys.argv[1], array, Geometry((1.0, 1.0, 1.0)))
except DataError as exc:
    print("DataError", exc)
    sys.exit(3)
"""


def _limit_file_size(limit_bytes: int):
    import resource
    import signal

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


def test_a_short_write_under_ulimit_f_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    target = tmp_path / "out" / "image.nii.gz"
    done = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(target)], capture_output=True, text=True,
                          preexec_fn=_limit_file_size(64 * 1024), env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "image.nii.gz: writing failed" in done.stdout
    assert list((tmp_path / "out").iterdir()) == []  # no final name, no temporary file


def test_write_bytes_verifies_and_removes_its_temporary_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom nnunet_airway.writing import write_bytes\n"
            "write_bytes(sys.argv[1], bytes(200000))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.bin")], capture_output=True, text=True,
                          preexec_fn=_limit_file_size(64 * 1024), env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode != 0 and "File too large" in done.stderr
    assert list(tmp_path.iterdir()) == []


ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "float32",
                                   "float64"])
@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_nifti_read_directly_equals_simpleitks_read(tmp_path: Path, dtype: str, name: str) -> None:
    """The one-pass NIfTI reader gives SimpleITK's array (values, dtype, index order) and geometry."""
    from nnunet_airway.image_io import _read_nifti_voxels

    rng = np.random.default_rng(3)
    array = (rng.random((5, 6, 7)) * 100).astype(dtype)
    path = tmp_path / name
    write_image(path, array, Geometry(spacing=(0.7, 0.8, 2.5), origin=(-3.0, 4.0, 9.5), direction=ROTATED),
                compress=name.endswith(".gz"))
    assert _read_nifti_voxels(path) is not None  # the direct path was taken
    image = sitk.ReadImage(str(path))
    ours, geometry = read_image(path)
    expected = sitk.GetArrayFromImage(image)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape == (5, 6, 7)
    assert np.array_equal(ours, expected)
    assert geometry == Geometry.of(image)


def test_nifti_with_intensity_scaling_is_left_to_simpleitk(tmp_path: Path) -> None:
    from nnunet_airway.image_io import _read_nifti_voxels

    path = tmp_path / "scaled.nii"
    write_image(path, np.arange(24, dtype=np.int16).reshape(2, 3, 4), Geometry(spacing=(1.0, 1.0, 1.0)),
                compress=False)
    data = bytearray(path.read_bytes())
    data[112:120] = np.array([2.0, 10.0], "<f4").tobytes()  # scl_slope 2, scl_inter 10
    path.write_bytes(bytes(data))
    assert _read_nifti_voxels(path) is None
    array, _ = read_image(path)
    assert np.allclose(array, 2.0 * np.arange(24).reshape(2, 3, 4) + 10.0)
