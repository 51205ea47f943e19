"""Geometry, grid checks and atomic writes of nnunet_airway.image_io."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.errors import DataError
from nnunet_airway.image_io import (
    Geometry,
    atomic_path,
    check_same_grid,
    geometry_mismatch,
    prepare_output_dir,
    read_image,
    write_image,
    write_json,
)

GEOMETRY = Geometry((0.7, 0.8, 1.25), (-10.0, 20.0, 30.5), (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))


def test_image_round_trip_keeps_voxels_and_geometry(tmp_path: Path) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    write_image(tmp_path / "a.nii.gz", array, GEOMETRY)
    read, geometry = read_image(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(read, array)
    assert geometry_mismatch(read.shape, geometry, array.shape, GEOMETRY) is None
    assert geometry.spacing_zyx == pytest.approx((1.25, 0.8, 0.7))


def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


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
