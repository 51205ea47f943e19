"""CT volumes from DICOM: choose the series by its headers, stack slices by position, check the grid.

Rules (documented in docs/conversion.md and reported in conversion_report.json):

- A file is a slice candidate when pydicom reads it (with or without extension or preamble) and it has a
  SeriesInstanceUID. Localizers (ImageType LOCALIZER), non-image objects (SR, no ImagePositionPatient) and
  series whose Modality is not CT (CR, DX, ...) are ignored, never stacked.
- Several eligible CT series: the one with the most slices wins, then the thinnest slices, then the
  smallest SeriesInstanceUID (``choose_series``).
- Slices are sorted by ImagePositionPatient projected on the slice normal (row x column cosines), never by
  file name or InstanceNumber.
- Several slices at one position (within 0.01 mm): the one with the lowest InstanceNumber (then file path)
  is kept; the others are reported.
- Missing slices or non-uniform gaps: rejected with the gap found. Gantry tilt: rejected.
- Each slice's RescaleSlope/RescaleIntercept is applied; PixelPaddingValue voxels and anything below
  -1024 HU become -1024.
- Geometry comes from the headers: origin = position of the first slice, spacing = (column spacing, row
  spacing, slice spacing from positions), direction columns = (row cosines, column cosines, normal).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue

from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry

AIR_HU = -1024
DUPLICATE_TOLERANCE_MM = 0.01
GAP_RELATIVE_TOLERANCE = 0.01
GAP_ABSOLUTE_TOLERANCE_MM = 0.02
MAX_TILT_DEGREES = 0.1
# stand-in SeriesInstanceUIDs of series whose files carry none start with this
NO_SERIES_UID_PREFIX = "noSeriesInstanceUID."
DAMAGED = "damaged DICOM file (cut short or unreadable)"
NOT_AN_IMAGE_SLICE = "not an image slice"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
# files that are never DICOM; skipping them keeps scans of large trees (LIDC ships XML) fast and quiet
NOT_DICOM_SUFFIXES = {".xml", ".txt", ".json", ".md", ".csv", ".nii", ".gz", ".nrrd", ".nhdr", ".mha", ".mhd",
                      ".raw", ".zraw", ".png", ".jpg", ".jpeg", ".zip", ".pdf", ".py", ".pkl", ".npy", ".npz"}
_HEADER_TAGS = ["SeriesInstanceUID", "StudyInstanceUID", "PatientID", "Modality", "ImageType", "SOPClassUID",
                "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
                "InstanceNumber", "SliceThickness", "GantryDetectorTilt", "RescaleSlope", "RescaleIntercept",
                "SeriesDescription", "SamplesPerPixel"]


@dataclass(frozen=True)
class SliceHeader:
    """What the series reader needs from one DICOM file's header."""

    path: str
    series_uid: str
    study_uid: str
    patient_id: str
    modality: str
    image_type: tuple[str, ...]
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, float] | None
    rows: int
    columns: int
    instance_number: int | None
    slice_thickness: float | None
    gantry_tilt: float
    rescale_slope: float
    rescale_intercept: float
    description: str
    samples_per_pixel: int

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type

    @property
    def is_image_slice(self) -> bool:
        return self.position is not None and self.orientation is not None and self.rows > 0 and self.columns > 0


@dataclass
class Series:
    """The files of one SeriesInstanceUID that can be stacked, and those set aside with the reason."""

    series_uid: str
    patient_id: str
    study_uid: str
    modality: str
    description: str
    slices: list[SliceHeader] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    conflict: str | None = None  # why its files cannot be one volume (two patients, studies or slice sets)

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def slice_thickness(self) -> float:
        """Nominal slice thickness in mm (SliceThickness, else the median gap between positions)."""
        values = [s.slice_thickness for s in self.slices if s.slice_thickness]
        if values:
            return float(np.median(values))
        if self.n_slices > 1:
            return float(np.median(np.diff(np.sort(_positions_along_normal(self.slices)))))
        return float("inf")

    def summary(self) -> dict:
        return {"series_instance_uid": self.series_uid, "modality": self.modality, "n_slices": self.n_slices,
                "description": self.description, "n_ignored_files": len(self.ignored)}


@dataclass
class DicomVolume:
    """A stacked CT series: (Z, Y, X) array in HU, its geometry and what the reader noticed."""

    array: np.ndarray
    geometry: Geometry
    series_uid: str
    files: list[str]
    notes: list[str] = field(default_factory=list)
    dropped_duplicates: list[dict] = field(default_factory=list)


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _text(value) -> str:
    """A DICOM string value as text; a multi-valued one joined with DICOM's own separator (``x\\y``)."""
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _number(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def substitute_series_uid(ds: pydicom.Dataset, path: str | os.PathLike) -> str | None:
    """A stable stand-in for a missing SeriesInstanceUID, from what else tells series apart: the folder,
    StudyInstanceUID, PatientID, Modality, SeriesDescription, orientation, pixel spacing and matrix size.
    None when the file has none of the identifying tags (then it is not taken for a DICOM image)."""
    keys = ["StudyInstanceUID", "PatientID", "Modality", "SeriesDescription", "ImageOrientationPatient",
            "PixelSpacing", "Rows", "Columns"]
    values = [str(ds.get(k, "") or "") for k in keys]
    if not any(values[:3]) or "ImagePositionPatient" not in ds:
        return None
    orientation = _floats(ds.get("ImageOrientationPatient", None), 6)
    values[4] = "" if orientation is None else ",".join(f"{v:.4f}" for v in orientation)
    identity = "\0".join([os.path.dirname(os.path.abspath(path)), *values])
    return NO_SERIES_UID_PREFIX + hashlib.sha1(identity.encode()).hexdigest()[:16]


def read_header(path: str | os.PathLike) -> SliceHeader | None:
    """One file's header, or None when the file is not DICOM. A file without SeriesInstanceUID gets a stand-in
    built from its other identifiers (:func:`substitute_series_uid`), so such a series is still found."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
        series_uid = str(ds.get("SeriesInstanceUID", "") or "") or substitute_series_uid(ds, path)
    except Exception:  # noqa: BLE001 - any failure to parse means "not a DICOM file we can use"
        return None
    if not series_uid:
        return None
    image_type = ds.get("ImageType", None)
    instance = ds.get("InstanceNumber", None)
    return SliceHeader(
        path=str(path),
        series_uid=series_uid,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        patient_id=_text(ds.get("PatientID", "")),
        modality=str(ds.get("Modality", "") or "").upper(),
        image_type=tuple(str(t).upper() for t in image_type) if image_type else (),
        position=_floats(ds.get("ImagePositionPatient", None), 3),
        orientation=_floats(ds.get("ImageOrientationPatient", None), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing", None), 2),
        rows=int(ds.get("Rows", 0) or 0),
        columns=int(ds.get("Columns", 0) or 0),
        instance_number=int(instance) if instance not in (None, "") else None,
        slice_thickness=_number(ds.get("SliceThickness", None), 0.0) or None,
        gantry_tilt=_number(ds.get("GantryDetectorTilt", None), 0.0),
        rescale_slope=_number(ds.get("RescaleSlope", None), 1.0),
        rescale_intercept=_number(ds.get("RescaleIntercept", None), 0.0),
        description=str(ds.get("SeriesDescription", "") or ""),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
    )


def has_dicom_magic(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM preamble's "DICM" marker (bytes 128-131)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def is_damaged_dicom(path: str | os.PathLike) -> bool:
    """A file marked DICOM ("DICM") that pydicom cannot read or that holds no (or too little) pixel data: cut
    short or corrupt. Only asked of files that should be image slices (see :func:`find_ct_series`); a
    DICOMDIR is never damaged. (Headers are read tag by tag, so a cut inside the header otherwise looks like
    a non-DICOM file or a slice without position, and the series shows a gap where the file belongs.)"""
    if not has_dicom_magic(path) or Path(path).name.upper() == "DICOMDIR":
        return False
    try:
        ds = pydicom.dcmread(str(path), force=True)
        if str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS:
            return False
        if "PixelData" not in ds:
            return True
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is None or syntax.is_compressed:  # a compressed stream has no fixed length to check
            return False
        expected = (int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
                    * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.get("BitsAllocated", 16) or 16) // 8)
        return len(ds.PixelData) < expected
    except Exception:  # noqa: BLE001 - any failure to read a file marked DICOM means it is damaged
        return True


def damaged_slices(paths: Sequence[str], headers: Sequence[SliceHeader], series: Sequence[Series]) -> list[str]:
    """Damaged files (:func:`is_damaged_dicom`) that may belong to ``series``: files in their folders whose
    header could not be read, and the series' own files set aside as "not an image slice"."""
    folders = {os.path.dirname(h.path) for s in series for h in s.slices}
    read = {h.path for h in headers}
    suspects = [p for p in paths if p not in read and os.path.dirname(p) in folders]
    suspects += [path for s in series for path, reason in s.ignored if reason.startswith(NOT_AN_IMAGE_SLICE)]
    return [p for p in suspects if is_damaged_dicom(p)]


def candidate_files(root: str | os.PathLike) -> list[str]:
    """Every file under ``root`` (recursively, sorted) that may be DICOM, whatever its name."""
    root = Path(root)
    if root.is_file():
        return [str(root)]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") or Path(name).suffix.lower() in NOT_DICOM_SUFFIXES:
                continue
            files.append(os.path.join(dirpath, name))
    return files


def read_headers(paths: Sequence[str], num_workers: int = 1) -> list[SliceHeader]:
    """Headers of the DICOM files among ``paths`` (non-DICOM files are left out)."""
    if num_workers > 1 and len(paths) > 256:
        with ProcessPoolExecutor(num_workers) as pool:
            headers = list(pool.map(read_header, paths, chunksize=64))
    else:
        headers = [read_header(p) for p in paths]
    return [h for h in headers if h is not None]


def group_series(headers: Iterable[SliceHeader]) -> list[Series]:
    """Group headers by SeriesInstanceUID; localizers and non-image objects go to ``ignored``.

    One volume holds one patient: a SeriesInstanceUID whose files name several PatientIDs is split into one
    Series per patient, each with a ``conflict`` naming them all, so that every patient is reported and none
    is stacked into another's volume; files of several StudyInstanceUIDs, or two interleaved slice sets
    (instance numbers repeating at other positions), also get a conflict (see :func:`_slice_set_conflict`).
    """
    by_uid: dict[str, Series] = {}
    for h in headers:
        series = by_uid.get(h.series_uid)
        if series is None:
            series = by_uid[h.series_uid] = Series(h.series_uid, h.patient_id, h.study_uid, h.modality, h.description)
        if h.is_localizer:
            series.ignored.append((h.path, "localizer (ImageType LOCALIZER)"))
        elif not h.is_image_slice:
            series.ignored.append((h.path, f"{NOT_AN_IMAGE_SLICE} (Modality {h.modality or '?'}, no position)"))
        else:
            series.slices.append(h)
    result = [part for series in by_uid.values() for part in _one_patient_each(series)]
    return sorted(result, key=lambda s: (s.series_uid, s.patient_id))


def _one_patient_each(series: Series) -> list[Series]:
    """``series`` itself, or one Series per PatientID among its slices, each with the conflict named."""
    patients = Counter(h.patient_id for h in series.slices)
    if len(patients) <= 1:
        series.conflict = _slice_set_conflict(series.slices)
        return [series]
    listed = ", ".join(f"{patient or '(no PatientID)'}: {n} files" for patient, n in sorted(patients.items()))
    conflict = (f"its image files belong to {len(patients)} patients under one SeriesInstanceUID ({listed}); "
                "refused so that no two patients are stacked into one volume: give each patient's files their own "
                "series (SeriesInstanceUID) or convert them from separate folders")
    parts = []
    for patient in sorted(patients):
        slices = [h for h in series.slices if h.patient_id == patient]
        parts.append(Series(series.series_uid, patient, slices[0].study_uid, series.modality, series.description,
                            slices, list(series.ignored) if not parts else [], conflict))
    return parts


def _slice_set_conflict(slices: Sequence[SliceHeader]) -> str | None:
    """Why one patient's slices of one SeriesInstanceUID are not one volume, or None: several studies, or two
    interleaved sets (an instance number that repeats at another position: two copies of a series merged)."""
    studies = Counter(h.study_uid for h in slices)
    if len(studies) > 1:
        return (f"its image files belong to {len(studies)} studies (StudyInstanceUID) under one SeriesInstanceUID; "
                "refused so that no two scans are stacked into one volume: convert each study on its own")
    positions: dict[int, set[tuple[float, ...]]] = defaultdict(set)
    for h in slices:
        if h.instance_number is not None and h.position is not None:
            positions[h.instance_number].add(tuple(round(v, 3) for v in h.position))
    repeated = sorted(number for number, where in positions.items() if len(where) > 1)
    if repeated:
        shown = ", ".join(str(n) for n in repeated[:5]) + (" ..." if len(repeated) > 5 else "")
        return (f"two interleaved sets of slices: {len(repeated)} instance numbers ({shown}) each appear at more "
                "than one position (two copies of a series merged?); refused: keep one copy per folder")
    return None


def scan_dicom(root: str | os.PathLike, num_workers: int = 1) -> list[Series]:
    """All DICOM series found under ``root`` (a folder or one file), grouped by SeriesInstanceUID."""
    return group_series(read_headers(candidate_files(root), num_workers))


def why_not_ct_volume(series: Series, min_slices: int, max_slice_thickness: float | None = None) -> str | None:
    """Why a series cannot be a CT volume for this converter, or None when it can."""
    if series.conflict is not None:
        return series.conflict
    if series.modality != "CT":
        return f"Modality {series.modality or 'missing'}, not CT"
    if series.n_slices < min_slices:
        return f"{series.n_slices} image slices, fewer than {min_slices}"
    if max_slice_thickness is not None and series.slice_thickness > max_slice_thickness + 1e-6:
        return f"slice thickness {series.slice_thickness:g} mm above {max_slice_thickness:g} mm"
    return None


def choose_series(candidates: Sequence[Series]) -> Series:
    """The documented rule: most slices, then thinnest slices, then smallest SeriesInstanceUID."""
    if not candidates:
        raise ValueError("choose_series needs at least one candidate")
    return min(candidates, key=lambda s: (-s.n_slices, s.slice_thickness, s.series_uid))


def find_ct_series(root: str | os.PathLike, min_slices: int = 10, max_slice_thickness: float | None = None,
                   series_uid: str | None = None) -> tuple[Series, list[dict]]:
    """The CT series to convert under ``root``, and a summary of every series left aside with why.

    A damaged file (:func:`damaged_slices`) in a folder of the chosen series (or, when no series qualifies,
    of any CT series) is a DataError naming it: it would otherwise leave a gap, or a series too short, where
    it belongs. In a folder holding several series such a file cannot be told apart, so it stops them all."""
    paths = candidate_files(root)
    headers = read_headers(paths)
    all_series = group_series(headers)
    if not all_series:
        _refuse_damaged([p for p in paths if is_damaged_dicom(p)])
        raise DataError(f"{root}: no DICOM files found; point to a folder holding the slices of one CT series")
    if series_uid is not None:
        all_series = [s for s in all_series if s.series_uid == series_uid]
        if not all_series:
            raise DataError(f"{root}: no DICOM series with SeriesInstanceUID {series_uid}; check the folder")
    eligible, set_aside = [], []
    for s in all_series:
        reason = why_not_ct_volume(s, min_slices, max_slice_thickness)
        if reason is None:
            eligible.append(s)
        else:
            set_aside.append({**s.summary(), "reason": reason})
    if not eligible:  # a damaged slice may be why a CT series is too short
        _refuse_damaged(damaged_slices(paths, headers, [s for s in all_series if s.modality == "CT"]))
        found = "; ".join(f"{d['series_instance_uid']}: {d['reason']}" for d in set_aside)
        raise DataError(f"{root}: no CT series with at least {min_slices} slices ({found}); "
                        "check the folder or lower --min-slices")
    chosen = choose_series(eligible)
    _refuse_damaged(damaged_slices(paths, headers, [chosen]))
    set_aside += [{**s.summary(), "reason": "another CT series was chosen (most slices, then thinnest)"}
                  for s in eligible if s is not chosen]
    return chosen, set_aside


def _refuse_damaged(paths: Sequence[str]) -> None:
    if paths:
        more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
        raise DataError(f"{paths[0]}: {DAMAGED}" + (f" (also {', '.join(paths[1:3])}{more})" if len(paths) > 1
                                                     else "") + "; copy it again from the source")


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    return normal / np.linalg.norm(normal)


def _positions_along_normal(slices: Sequence[SliceHeader]) -> np.ndarray:
    normal = _normal(slices[0].orientation)
    return np.array([np.dot(s.position, normal) for s in slices])


def _check_consistent(series: Series) -> None:
    first = series.slices[0]
    for s in series.slices[1:]:
        if not np.allclose(s.orientation, first.orientation, atol=1e-4):
            raise DataError(f"{s.path}: ImageOrientationPatient {s.orientation} differs from {first.orientation} "
                            f"in {first.path} (series {series.series_uid}); remove the odd slices")
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise DataError(f"{s.path}: {s.rows}x{s.columns} pixels, {first.path} has {first.rows}x{first.columns} "
                            f"(series {series.series_uid}); remove the odd slices")
        if s.pixel_spacing != first.pixel_spacing:
            raise DataError(f"{s.path}: PixelSpacing {s.pixel_spacing} differs from {first.pixel_spacing} "
                            f"(series {series.series_uid}); remove the odd slices")
    if first.pixel_spacing is None:
        raise DataError(f"{first.path}: no PixelSpacing; this series cannot be placed in space")
    if first.samples_per_pixel != 1:
        raise DataError(f"{first.path}: {first.samples_per_pixel} samples per pixel; a CT slice is greyscale")


def order_slices(series: Series) -> tuple[list[SliceHeader], np.ndarray, list[dict]]:
    """Slices sorted along the normal with duplicates removed, their positions (mm) and the duplicates dropped."""
    _check_consistent(series)
    positions = _positions_along_normal(series.slices)
    order = sorted(range(series.n_slices), key=lambda i: (
        positions[i], series.slices[i].instance_number if series.slices[i].instance_number is not None else 1 << 30,
        series.slices[i].path))
    kept: list[int] = []
    dropped: list[dict] = []
    for i in order:
        if kept and abs(positions[i] - positions[kept[-1]]) <= DUPLICATE_TOLERANCE_MM:
            group = [kept[-1], i]
            keep = min(group, key=lambda j: (series.slices[j].instance_number
                                             if series.slices[j].instance_number is not None else 1 << 30,
                                             series.slices[j].path))
            drop = i if keep == kept[-1] else kept[-1]
            kept[-1] = keep
            dropped.append({"position_mm": round(float(positions[drop]), 4), "kept": series.slices[keep].path,
                            "dropped": series.slices[drop].path})
        else:
            kept.append(i)
    return [series.slices[i] for i in kept], positions[kept], dropped


def slice_spacing(slices: Sequence[SliceHeader], positions: np.ndarray, where: str) -> float:
    """The uniform distance between slices in mm; DataError naming the gap when there is none."""
    if len(positions) < 2:
        raise DataError(f"{where}: a single slice; a CT volume needs at least 2")
    gaps = np.diff(positions)
    typical = float(np.median(gaps))
    tolerance = max(GAP_ABSOLUTE_TOLERANCE_MM, GAP_RELATIVE_TOLERANCE * typical)
    bad = np.flatnonzero(np.abs(gaps - typical) > tolerance)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{where}: gap of {gaps[i]:.4g} mm between the slices at {positions[i]:.4g} mm ({slices[i].path}) and "
            f"{positions[i + 1]:.4g} mm ({slices[i + 1].path}) where the others are {typical:.4g} mm apart "
            f"({bad.size} uneven gap(s)): missing slices or non-uniform spacing; complete the series or leave it out")
    return float((positions[-1] - positions[0]) / (len(positions) - 1))


def check_no_tilt(slices: Sequence[SliceHeader], where: str) -> None:
    """Reject gantry-tilted series: positions that do not run along the slice normal, or a tilt header."""
    tilted = [s for s in slices if abs(s.gantry_tilt) > 1e-3]
    if tilted:
        raise DataError(f"{tilted[0].path}: GantryDetectorTilt {tilted[0].gantry_tilt:g} degrees; tilted series are "
                        f"not supported ({where}); resample it to an orthogonal grid first")
    travel = np.subtract(slices[-1].position, slices[0].position)
    along = abs(float(np.dot(travel, _normal(slices[0].orientation))))
    across = float(np.linalg.norm(travel - np.dot(travel, _normal(slices[0].orientation)) * _normal(
        slices[0].orientation)))
    angle = float(np.degrees(np.arctan2(across, along)))
    if angle > MAX_TILT_DEGREES:
        raise DataError(f"{where}: slice positions drift {across:.3g} mm sideways over {along:.3g} mm "
                        f"(gantry tilt of {angle:.2f} degrees); resample it to an orthogonal grid first")


def series_geometry(slices: Sequence[SliceHeader], spacing_z: float) -> Geometry:
    first = slices[0]
    row, col = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    normal = _normal(first.orientation)
    direction = np.stack([row, col, normal], axis=1)  # columns are the x, y, z axes
    row_spacing, column_spacing = first.pixel_spacing
    return Geometry((column_spacing, row_spacing, spacing_z), first.position, tuple(direction.ravel()))


def _output_dtype(slices: Sequence[SliceHeader]) -> type:
    integral = all(float(s.rescale_slope).is_integer() and float(s.rescale_intercept).is_integer() for s in slices)
    return np.int16 if integral else np.float32


def _padding_mask(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray | None:
    padding = ds.get("PixelPaddingValue", None)
    if padding is None:
        return None
    limit = ds.get("PixelPaddingRangeLimit", None)
    if limit is None:
        return raw == padding
    low, high = min(padding, limit), max(padding, limit)
    return (raw >= low) & (raw <= high)


def read_pixels(slices: Sequence[SliceHeader], notes: list[str]) -> np.ndarray:
    """Stack the slices' pixels in HU as (Z, Y, X): rescale applied, padding and values below -1024 set to -1024."""
    dtype = _output_dtype(slices)
    out = np.empty((len(slices), slices[0].rows, slices[0].columns), dtype=dtype)
    n_clipped = 0
    for k, s in enumerate(slices):
        try:
            ds = pydicom.dcmread(s.path, force=True)
            raw = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for unreadable or undecodable pixel data
            raise DataError(f"{s.path}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); "
                            "re-export the series uncompressed or install the decoder it names") from exc
        if raw.shape != out.shape[1:]:
            raise DataError(f"{s.path}: pixel data of shape {raw.shape}, expected {out.shape[1:]}")
        hu = raw.astype(np.float32) * s.rescale_slope + s.rescale_intercept if dtype is np.float32 else \
            raw.astype(np.int32) * int(s.rescale_slope) + int(s.rescale_intercept)
        padding = _padding_mask(ds, raw)
        if padding is not None:
            hu[padding] = AIR_HU
        low = hu < AIR_HU
        n_clipped += int(np.count_nonzero(low))
        np.clip(hu, AIR_HU, np.iinfo(np.int16).max if dtype is np.int16 else None, out=hu)
        out[k] = hu
    if n_clipped:
        notes.append(f"{n_clipped} voxels below {AIR_HU} HU (padding outside the field of view) set to {AIR_HU}")
    return out


def read_series(series: Series) -> DicomVolume:
    """Stack one series into a volume, applying every rule in this module's docstring."""
    where = f"series {series.series_uid} ({Path(series.slices[0].path).parent})"
    slices, positions, dropped = order_slices(series)
    spacing_z = slice_spacing(slices, positions, where)
    check_no_tilt(slices, where)
    notes: list[str] = []
    if dropped:
        notes.append(f"{len(dropped)} duplicate slice(s) at one position dropped (kept the lowest InstanceNumber)")
    if series.ignored:
        notes.append(f"{len(series.ignored)} file(s) of the series ignored: "
                     + "; ".join(sorted({reason for _, reason in series.ignored})))
    array = read_pixels(slices, notes)
    return DicomVolume(array, series_geometry(slices, spacing_z), series.series_uid, [s.path for s in slices],
                       notes, dropped)


def read_dicom_files(paths: Sequence[str], min_slices: int = 10) -> DicomVolume:
    """Read the given files as one CT series (the chosen one when they hold several)."""
    series = [s for s in group_series(read_headers(paths))
              if why_not_ct_volume(s, min_slices) is None]
    if not series:
        where = Path(paths[0]).parent if paths else "(no files)"
        raise DataError(f"{where}: the given files hold no CT series with at least {min_slices} slices")
    return read_series(choose_series(series))


def read_dicom_folder(root: str | os.PathLike, min_slices: int = 10, max_slice_thickness: float | None = None,
                      series_uid: str | None = None) -> tuple[DicomVolume, list[dict]]:
    """Find, choose and read the CT series under ``root``; also return the series left aside."""
    chosen, set_aside = find_ct_series(root, min_slices, max_slice_thickness, series_uid)
    return read_series(chosen), set_aside


def series_by_patient(series: Iterable[Series]) -> dict[str, list[Series]]:
    grouped: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        grouped[s.patient_id].append(s)
    return dict(grouped)
