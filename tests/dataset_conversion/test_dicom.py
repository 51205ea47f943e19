"""The DICOM series reader on small series the tests write, and on a real chest CT (cip_ct64)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.dataset
import pydicom.uid
import pytest
import SimpleITK as sitk

from nnunet_airway.dataset_conversion.dicom import read_dicom_folder
from nnunet_airway.errors import DataError


def test_files_without_extension_in_shuffled_name_order_read_in_slice_order(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 16, 16))
    names = [f"{n:08x}" for n in random.Random(3).sample(range(1 << 30), 10)]  # no extension, random order
    assert sorted(names) != names
    make.write_series(tmp_path / "s", hu, name=lambda k: names[k], instance_numbers=list(range(10, 0, -1)))
    volume, set_aside = read_dicom_folder(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.array.dtype == np.int16
    assert set_aside == []


def test_files_without_dicom_preamble_are_read(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 16, 16))
    make.write_series(tmp_path / "s", hu, preamble=False, name=lambda k: str(k))
    np.testing.assert_array_equal(read_dicom_folder(tmp_path / "s")[0].array, hu)


@pytest.mark.parametrize("orientation, descending", [
    ((1, 0, 0, 0, 1, 0), False),            # axial, head last
    ((1, 0, 0, 0, 1, 0), True),             # axial, files written from the top down
    ((0, 1, 0, 0, 0, -1), False),           # sagittal
    ((0.8, 0.6, 0, -0.6, 0.8, 0), False),   # oblique in-plane rotation
])
def test_origin_spacing_and_direction_kept_exactly(tmp_path: Path, make, orientation, descending) -> None:
    hu = make.ct_volume((10, 16, 16))
    spacing, origin = (0.7, 0.8, 1.25), np.array([-10.5, 20.25, -30.125])
    row, col = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row, col)
    positions = [origin + k * spacing[2] * normal for k in range(10)]
    order = list(range(10))[::-1] if descending else list(range(10))
    make.write_series(tmp_path / "s", hu[order], spacing_xyz=spacing, orientation=orientation,
                      positions=[positions[k] for k in order])
    volume, _ = read_dicom_folder(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    np.testing.assert_allclose(volume.geometry.spacing, spacing, rtol=1e-6)
    np.testing.assert_allclose(volume.geometry.origin, origin, atol=1e-6)
    np.testing.assert_allclose(volume.geometry.direction, np.stack([row, col, normal], axis=1).ravel(), atol=1e-6)
    # SimpleITK/GDCM places the same files identically
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    reference = reader.Execute()
    np.testing.assert_allclose(volume.geometry.origin, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.direction, reference.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))


def test_picks_the_ct_series_and_ignores_localizer_cr_sr_and_smaller_series(tmp_path: Path, make) -> None:
    hu = make.ct_volume((12, 16, 16))
    main = make.write_series(tmp_path / "mixed", hu, name=lambda k: f"a{k:03d}")
    make.write_series(tmp_path / "mixed", make.ct_volume((10, 16, 16), seed=5), spacing_xyz=(0.7, 0.8, 5.0),
                      name=lambda k: f"b{k:03d}")  # a thick reconstruction with fewer slices
    make.write_non_ct_objects(tmp_path / "mixed")
    volume, set_aside = read_dicom_folder(tmp_path / "mixed")
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.files == [str(p) for p in main]
    reasons = sorted(d["reason"] for d in set_aside)
    assert any("Modality CR" in r for r in reasons)
    assert any("Modality SR" in r for r in reasons)
    assert any("another CT series was chosen" in r for r in reasons)
    assert any("0 image slices" in r for r in reasons)  # the scout: localizer slices are never stacked


def test_localizer_inside_the_ct_series_is_left_out(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 16, 16))
    uid = "1.2.3.4.5"
    make.write_series(tmp_path / "s", hu, series_uid=uid)
    make.write_series(tmp_path / "s", make.ct_volume((1, 16, 16)), series_uid=uid, orientation=(1, 0, 0, 0, 0, -1),
                      image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), name=lambda k: "scout")
    volume, _ = read_dicom_folder(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    assert any("localizer" in note for note in volume.notes)


def test_too_few_slices_is_a_clear_error(tmp_path: Path, make) -> None:
    make.write_series(tmp_path / "s", make.ct_volume((4, 16, 16)))
    with pytest.raises(DataError, match="no CT series with at least 10 slices"):
        read_dicom_folder(tmp_path / "s")


def test_duplicate_positions_keep_the_lowest_instance_number_and_are_reported(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 16, 16))
    make.write_series(tmp_path / "s", hu, instance_numbers=[k + 1 for k in range(10)], study_uid="1.2.3")
    other = hu[4:5].copy() + 7  # a different image at the position of slice 4 (same patient, study and series)
    make.write_series(tmp_path / "s", other, series_uid=read_dicom_folder(tmp_path / "s")[0].series_uid,
                      origin=(-10.0, -20.0, -30.0 + 4 * 1.25), instance_numbers=[99], name=lambda k: "dup",
                      study_uid="1.2.3")
    volume, _ = read_dicom_folder(tmp_path / "s")
    np.testing.assert_array_equal(volume.array, hu)
    assert len(volume.dropped_duplicates) == 1
    assert volume.dropped_duplicates[0]["dropped"].endswith("dup")
    assert volume.dropped_duplicates[0]["position_mm"] == pytest.approx(-25.0)


def test_missing_slice_is_rejected_with_the_gap(tmp_path: Path, make) -> None:
    paths = make.write_series(tmp_path / "s", make.ct_volume((11, 16, 16)))
    paths[6].unlink()
    with pytest.raises(DataError, match=r"gap of 2\.5 mm .* others are 1\.25 mm apart"):
        read_dicom_folder(tmp_path / "s")


@pytest.mark.parametrize(("keep_bytes", "message"), [
    (300, r"damaged DICOM file \(cut short or unreadable\); copy it again from the source"),  # before the UID
    (800, r"damaged DICOM file \(cut short or unreadable\); copy it again from the source"),  # before Rows
    (1000, r"pixel data cannot be decoded"),  # inside the pixel data
])
def test_a_slice_cut_short_is_named_as_damaged_not_reported_as_a_gap(tmp_path: Path, make, keep_bytes: int,
                                                                     message: str) -> None:
    # before, a cut inside the header left the file out and the series showed "gap of 2.5 mm"
    paths = make.write_series(tmp_path / "s", make.ct_volume((11, 16, 16)))
    data = Path(paths[6]).read_bytes()
    Path(paths[6]).write_bytes(data[:keep_bytes])
    with pytest.raises(DataError, match=rf"{paths[6].name}: {message}"):
        read_dicom_folder(tmp_path / "s")


def test_a_lone_damaged_file_is_named(tmp_path: Path, make) -> None:
    paths = make.write_series(tmp_path / "s", make.ct_volume((11, 16, 16)))
    for path in paths[1:]:
        Path(path).unlink()
    Path(paths[0]).write_bytes(Path(paths[0]).read_bytes()[:300])
    with pytest.raises(DataError, match="damaged DICOM file"):
        read_dicom_folder(tmp_path / "s")


def _write_object_without_pixels(path: Path, sop_class: str, series_uid: str | None, modality: str) -> None:
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.dataset.FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.Modality = sop_class, modality
    if series_uid is not None:
        ds.SeriesInstanceUID = series_uid
    ds.save_as(str(path), enforce_file_format=True)


def test_dicomdir_and_objects_without_pixels_beside_the_slices_are_not_damaged(tmp_path: Path, make) -> None:
    make.write_series(tmp_path / "s", make.ct_volume((11, 16, 16)))
    _write_object_without_pixels(tmp_path / "s" / "DICOMDIR", "1.2.840.10008.1.3.10", None, "")
    _write_object_without_pixels(tmp_path / "s" / "plan.dcm", "1.2.840.10008.5.1.4.1.1.481.5",
                                 pydicom.uid.generate_uid(), "RTPLAN")
    volume, set_aside = read_dicom_folder(tmp_path / "s")
    assert volume.array.shape == (11, 16, 16)
    assert [d["modality"] for d in set_aside] == ["RTPLAN"]


def test_a_damaged_slice_that_leaves_too_few_slices_is_named(tmp_path: Path, make) -> None:
    paths = make.write_series(tmp_path / "s", make.ct_volume((10, 16, 16)))
    Path(paths[3]).write_bytes(Path(paths[3]).read_bytes()[:300])
    with pytest.raises(DataError, match=rf"{paths[3].name}: damaged DICOM file"):
        read_dicom_folder(tmp_path / "s", min_slices=10)


def test_non_uniform_spacing_is_rejected(tmp_path: Path, make) -> None:
    z = [0, 1, 2, 3, 4, 5.5, 7, 8.5, 10, 11.5]
    make.write_series(tmp_path / "s", make.ct_volume((10, 16, 16)), positions=[(0, 0, v) for v in z])
    with pytest.raises(DataError, match="non-uniform spacing"):
        read_dicom_folder(tmp_path / "s")


@pytest.mark.parametrize("slope, intercept, dtype", [(1, -1024, np.int16), (2, -1000, np.int16),
                                                      (0.5, -1024.5, np.float32)])
def test_rescale_slope_and_intercept_applied(tmp_path: Path, make, slope, intercept, dtype) -> None:
    hu = make.ct_volume((10, 16, 16))
    hu = (np.round((hu - intercept) / slope) * slope + intercept)  # values the stored integers can express
    make.write_series(tmp_path / "s", hu, slope=slope, intercept=intercept)
    volume, _ = read_dicom_folder(tmp_path / "s")
    assert volume.array.dtype == dtype
    np.testing.assert_array_equal(volume.array, np.maximum(hu, -1024).astype(dtype))


def test_padding_below_minus_1024_is_clipped(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 16, 16))
    hu[:, :3, :] = -3024  # outside the field of view
    hu[:, 3, :] = -2000
    make.write_series(tmp_path / "s", hu, intercept=-1024, padding_value=-2000)
    volume, _ = read_dicom_folder(tmp_path / "s")
    assert volume.array.min() == -1024
    np.testing.assert_array_equal(volume.array[:, :4, :], -1024)
    np.testing.assert_array_equal(volume.array[:, 4:, :], hu[:, 4:, :])
    assert any("set to -1024" in note for note in volume.notes)


def test_gantry_tilt_is_rejected(tmp_path: Path, make) -> None:
    positions = [(0.0, k * 1.25 * np.tan(np.radians(15)), k * 1.25) for k in range(10)]
    make.write_series(tmp_path / "drift", make.ct_volume((10, 16, 16)), positions=positions)
    with pytest.raises(DataError, match=r"gantry tilt of 15\.00 degrees"):
        read_dicom_folder(tmp_path / "drift")
    make.write_series(tmp_path / "header", make.ct_volume((10, 16, 16)), gantry_tilt=12.0)
    with pytest.raises(DataError, match="GantryDetectorTilt 12"):
        read_dicom_folder(tmp_path / "header")


def test_jpeg2000_series_is_read(tmp_path: Path, make) -> None:
    hu = make.ct_volume((10, 32, 32))  # OpenJPEG needs at least 32 x 32 for its default resolution levels
    paths = make.write_series(tmp_path / "s", hu, jpeg2000=True)
    import pydicom

    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    np.testing.assert_array_equal(read_dicom_folder(tmp_path / "s")[0].array, hu)


def test_real_chest_ct_matches_its_nrrd_voxel_by_voxel(tmp_path: Path, make) -> None:
    folder = tmp_path / "ct64"
    shutil.copytree(make.cip_data / "ct64_dicom", folder)
    volume, _ = read_dicom_folder(folder)
    reference = sitk.ReadImage(str(make.cip_data / "ct-64.nrrd"))
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(volume.geometry.spacing, reference.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(volume.geometry.origin, reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.geometry.direction, reference.GetDirection(), atol=1e-9)
    assert volume.series_uid.startswith("1.2.826.0.1.3680043")


def test_a_series_without_series_instance_uid_is_found_by_its_other_identifiers(tmp_path: Path, make) -> None:
    import pydicom

    volume = make.ct_volume((12, 16, 16))
    files = make.write_series(tmp_path / "scan", volume)
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    read, _ = read_dicom_folder(tmp_path / "scan")
    np.testing.assert_array_equal(read.array, volume)
    assert read.series_uid.startswith("noSeriesInstanceUID.")
