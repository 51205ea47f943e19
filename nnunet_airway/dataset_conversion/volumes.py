"""Read one case's CT and label from whatever the source holds: an image file, a DICOM folder or DICOM files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_airway.dataset_conversion.dicom import AIR_HU, read_dicom_files, read_dicom_folder
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry, geometry_mismatch, read_image

# suffixes SimpleITK reads as one volume file (multi-part suffixes first)
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class Volume:
    """A CT (HU) or label volume as (Z, Y, X) with its geometry and where it came from."""

    array: np.ndarray
    geometry: Geometry
    source: str
    series_uid: str | None = None
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)


def image_suffix(path: str | os.PathLike) -> str | None:
    """The image-file suffix of ``path`` (``.nii.gz``, ``.nrrd``, ...) or None."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def read_ct(image: tuple[str, ...], min_slices: int = 10, series_uid: str | None = None) -> Volume:
    """One CT volume from an image file, a DICOM folder or the files of one DICOM series.

    Values below -1024 HU are set to -1024 whatever the source, and the count reported.
    """
    if len(image) == 1 and Path(image[0]).is_dir():
        volume, set_aside = read_dicom_folder(image[0], min_slices=min_slices, series_uid=series_uid)
        ct = Volume(volume.array, volume.geometry, image[0], volume.series_uid, volume.notes,
                    {"dicom_files": len(volume.files), "series_set_aside": set_aside,
                     "dropped_duplicates": volume.dropped_duplicates})
    elif len(image) == 1 and image_suffix(image[0]) is not None:
        array, geometry = read_image(image[0])
        ct = Volume(array, geometry, image[0])
        low = array < AIR_HU
        if np.any(low):
            ct.array = np.maximum(array, np.asarray(AIR_HU, dtype=array.dtype))
            ct.notes.append(f"{int(np.count_nonzero(low))} voxels below {AIR_HU} HU set to {AIR_HU}")
    else:
        volume = read_dicom_files(list(image), min_slices=min_slices)
        ct = Volume(volume.array, volume.geometry, str(Path(image[0]).parent), volume.series_uid, volume.notes,
                    {"dicom_files": len(volume.files), "dropped_duplicates": volume.dropped_duplicates})
    if ct.array.dtype.kind == "f" and not np.all(np.isfinite(ct.array)):
        raise DataError(f"{ct.source}: the image holds NaN or infinite values; fix or leave out this case")
    return ct


def read_label(path: str, ct: Volume, binarize: bool) -> np.ndarray:
    """The airway label of ``ct`` as uint8 0/1 on the CT's grid.

    Shape, spacing, origin and direction must agree with the CT (nnU-Net itself only warns on the last two);
    labels other than 0/1 are an error unless ``binarize`` (every value > 0 becomes airway).
    """
    if image_suffix(path) is None:
        raise DataError(f"{path}: a label must be a NIfTI, NRRD or MHA/MHD file; convert it to one of these")
    array, geometry = read_image(path)
    problem = geometry_mismatch(ct.array.shape, ct.geometry, array.shape, geometry)
    if problem is not None:
        raise DataError(
            f"{path}: label and CT ({ct.source}) are not on one grid ({problem}). CT: shape {ct.array.shape}, "
            f"{ct.geometry.describe()}; label: shape {array.shape}, {geometry.describe()}. Nothing is flipped or "
            "resampled silently: export the label on the CT's grid")
    values = np.unique(array)
    extra = [v for v in values.tolist() if v not in (0, 1)]
    if extra and not binarize:
        shown = ", ".join(f"{v:g}" for v in extra[:10]) + (", ..." if len(extra) > 10 else "")
        raise DataError(f"{path}: label values {shown} besides 0 and 1; give a binary airway label or pass "
                        "--binarize-labels to make every value > 0 airway")
    return (array > 0).astype(np.uint8)
