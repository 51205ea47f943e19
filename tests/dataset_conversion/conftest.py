"""Tiny DICOM series and image/label files written by the tests themselves (pydicom / SimpleITK)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image

DATA = Path(__file__).resolve().parents[1] / "data" / "cip_ct64"


def ct_volume(shape_zyx=(10, 16, 16), seed: int = 0) -> np.ndarray:
    """A small int16 'CT' in HU: air outside, soft tissue inside, a dark tube down the middle."""
    rng = np.random.default_rng(seed)
    z, y, x = shape_zyx
    volume = np.full(shape_zyx, -1000, dtype=np.int16)
    volume[:, 2:y - 2, 2:x - 2] = 40
    volume[:, y // 2 - 2:y // 2 + 2, x // 2 - 2:x // 2 + 2] = -950
    volume += rng.integers(-5, 6, size=shape_zyx).astype(np.int16)
    volume[0, 0, 0] = -1000 + z  # tells slices apart at a corner
    volume[:, 0, 1] = np.arange(z, dtype=np.int16) * 10
    return volume


def airway_label(volume: np.ndarray) -> np.ndarray:
    return (volume < -900).astype(np.uint8) * ((np.arange(volume.shape[2]) > 4)[None, None, :]).astype(np.uint8)


def write_series(folder: Path, hu_zyx: np.ndarray, *, spacing_xyz=(0.7, 0.8, 1.25), origin=(-10.0, -20.0, -30.0),
                 orientation=(1, 0, 0, 0, 1, 0), positions: Sequence[Sequence[float]] | None = None,
                 name: Callable[[int], str] = lambda k: f"IM{k + 1:04d}.dcm", slope: float = 1.0,
                 intercept: float = -1024.0, series_uid: str | None = None, patient_id: str = "PAT1",
                 modality: str = "CT", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                 instance_numbers: Sequence[int] | None = None, jpeg2000: bool = False,
                 padding_value: int | None = None, gantry_tilt: float | None = None, study_uid: str | None = None,
                 slice_thickness: float | None = None, preamble: bool = True) -> list[Path]:
    """Write ``hu_zyx`` as one DICOM series; stored values are (HU - intercept) / slope as int16.

    Slice k lies at ``origin + k * spacing_z * normal`` unless ``positions`` gives each slice's position.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    paths = []
    for k, hu in enumerate(hu_zyx):
        position = positions[k] if positions is not None else np.asarray(origin) + k * spacing_xyz[2] * normal
        stored = np.round((hu.astype(np.float64) - intercept) / slope).astype(np.int16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID = CTImageStorage
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.ImageType = list(image_type)
        ds.InstanceNumber = instance_numbers[k] if instance_numbers is not None else k + 1
        ds.ImagePositionPatient = [f"{float(v):.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{float(v):.6f}" for v in orientation]
        ds.PixelSpacing = [spacing_xyz[1], spacing_xyz[0]]
        ds.SliceThickness = slice_thickness if slice_thickness is not None else spacing_xyz[2]
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        if padding_value is not None:
            ds.PixelPaddingValue = padding_value
        if gantry_tilt is not None:
            ds.GantryDetectorTilt = gantry_tilt
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.PixelData = stored.tobytes()
        if jpeg2000:
            ds.compress(JPEG2000Lossless, stored)
        path = folder / name(k)
        ds.save_as(path, enforce_file_format=preamble)
        paths.append(path)
    return paths


def write_case_files(images: Path, labels: Path | None, case: str, shape_zyx=(10, 16, 16), seed: int = 0,
                     geometry: Geometry | None = None, image_name: str | None = None,
                     label_name: str | None = None) -> tuple[Path, Path | None]:
    """A CT and its label as NIfTI (or any suffix given in the names)."""
    geometry = geometry or Geometry((0.7, 0.8, 1.25), (-10.0, -20.0, -30.0))
    volume = ct_volume(shape_zyx, seed)
    image = write_image(images / (image_name or f"{case}.nii.gz"), volume, geometry)
    label = write_image(labels / (label_name or f"{case}.nii.gz"), airway_label(volume), geometry) if labels else None
    return image, label


def _non_image_object(sop_class: str, modality: str, patient_id: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID = modality, patient_id, generate_uid()
    return ds


def write_non_ct_objects(folder: Path, patient_id: str = "PAT1") -> None:
    """A CR radiograph, a structured report and a 2-slice scout: things a CT series reader must ignore."""
    cr = _non_image_object("1.2.840.10008.5.1.4.1.1.1", "CR", patient_id)
    cr.Rows = cr.Columns = 8
    cr.SamplesPerPixel, cr.PhotometricInterpretation = 1, "MONOCHROME2"
    cr.BitsAllocated = cr.BitsStored = 16
    cr.HighBit, cr.PixelRepresentation = 15, 0
    cr.PixelData = np.zeros((8, 8), np.uint16).tobytes()
    cr.save_as(folder / "radiograph", enforce_file_format=True)
    _non_image_object("1.2.840.10008.5.1.4.1.1.88.11", "SR", patient_id).save_as(folder / "report",
                                                                                 enforce_file_format=True)
    write_series(folder, ct_volume((2, 16, 16)), orientation=(1, 0, 0, 0, 0, -1), patient_id=patient_id,
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), name=lambda k: f"scout{k}")
    (folder / "notes.txt").write_text("not DICOM\n")


def write_cip_case(images: Path, labels: Path, case: str = "cip", label_suffix: str = ".nii.gz") -> None:
    """The real cip_ct64 DICOM series as ``images/<case>/`` and its airway, ``(lm >> 8) == 2``, as a label file."""
    shutil.copytree(DATA / "ct64_dicom", images / case)
    label_map = sitk.ReadImage(str(DATA / "lm-64.nrrd"))
    airway = sitk.GetImageFromArray(((sitk.GetArrayFromImage(label_map) >> 8) == 2).astype(np.uint8))
    airway.CopyInformation(label_map)
    labels.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(airway, str(labels / f"{case}{label_suffix}"))


def read_nifti(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


@pytest.fixture
def nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """nnU-Net's three folders inside tmp_path, exported in the environment."""
    dirs = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, path in dirs.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    return dirs


def case_folders(tmp_path: Path, n: int = 2) -> tuple[Path, Path]:
    """``tmp_path/images`` and ``tmp_path/labels`` with cases ``case0``.. ``case<n-1>`` (seeds 0..n-1)."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    for i in range(n):
        write_case_files(images, labels, f"case{i}", seed=i)
    return images, labels


@pytest.fixture
def make() -> SimpleNamespace:
    """The writers above, for test modules (importlib import mode cannot import this conftest by name)."""
    return SimpleNamespace(ct_volume=ct_volume, airway_label=airway_label, write_series=write_series,
                           write_case_files=write_case_files, case_folders=case_folders, write_non_ct_objects=write_non_ct_objects,
                           write_cip_case=write_cip_case,
                           read_nifti=read_nifti, cip_data=DATA)
