"""Where each public airway data set keeps its cases: every source turns its on-disk layout into CaseSpecs.

Sources never read pixels; the raw writer does, through one reader, so every source gets the same checks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_airway.dataset_conversion.dicom import choose_series, scan_dicom, series_by_patient, why_not_ct_volume
from nnunet_airway.dataset_conversion.raw_writer import CaseSpec
from nnunet_airway.dataset_conversion.volumes import image_suffix
from nnunet_airway.errors import DataError

WITHDRAWN_ATM22 = {"ATM_164": "withdrawn by the ATM'22 organisers; pass --include-withdrawn to convert it"}


@dataclass
class Found:
    """The cases a source found, and the inputs it could not use (stored in the report)."""

    cases: list[CaseSpec] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


def case_name(path: str | os.PathLike) -> str:
    """Case name of an image file or DICOM folder: the name without image suffix and without ``_0000``."""
    path = Path(path)
    suffix = image_suffix(path)
    stem = path.name[: -len(suffix)] if suffix else path.name
    return stem[:-5] if stem.endswith("_0000") else stem


def _add_unique(index: dict[str, str], key: str, path: str) -> None:
    if key in index:
        raise DataError(f"{path} and {index[key]} both give case {key!r}; keep one of them")
    index[key] = path


def _label_index(labels_dir: str | os.PathLike | None, key: Callable[[Path], str | None] = case_name) -> dict:
    """Label files in ``labels_dir`` (not recursive) by case key; {} when no folder was given."""
    if labels_dir is None:
        return {}
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise DataError(f"{labels_dir}: labels folder not found; check --labels")
    index: dict[str, str] = {}
    for path in sorted(labels_dir.iterdir()):
        if image_suffix(path) and path.is_file():
            name = key(path)
            if name:
                _add_unique(index, name, str(path))
    return index


def _require_dir(path: str | os.PathLike, flag: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: folder not found; check {flag}")
    return path


def folder_cases(images_dir: str | os.PathLike, labels_dir: str | os.PathLike | None) -> Found:
    """Pairs by name: ``images/<case>[_0000].<ext>`` or a DICOM folder ``images/<case>/`` with
    ``labels/<case>.<ext>`` (NIfTI, NRRD, MHA/MHD). Images without a label go to imagesTs."""
    images = _require_dir(images_dir, "--images")
    found_images: dict[str, str] = {}
    for path in sorted(images.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir() or (path.is_file() and image_suffix(path)):
            _add_unique(found_images, case_name(path), str(path))
    labels = _label_index(labels_dir)
    found = Found([CaseSpec(case, (path,), labels.get(case)) for case, path in found_images.items()])
    found.unmatched = [f"{p}: label without an image" for c, p in labels.items() if c not in found_images]
    found.unmatched += [f"{p}: a folder; labels must be NIfTI, NRRD or MHA/MHD files, so {p.name} has no label"
                        for p in sorted(Path(labels_dir).iterdir()) if p.is_dir()] if labels_dir else []
    return found


def lidc_cases(root: str | os.PathLike, labels_dir: str | os.PathLike | None = None,
               max_slice_thickness: float | None = None, min_slices: int = 10, num_workers: int = 1,
               labelled_only: bool = False) -> Found:
    """One CT series per patient (PatientID) found by headers anywhere under ``root``.

    Rule: among the patient's CT series with >= ``min_slices`` slices (and slice thickness <=
    ``max_slice_thickness``), the one with a label ``<SeriesInstanceUID>.<ext>`` in ``labels_dir``; else the most
    slices, then thinnest, then smallest UID. Unlabelled series go to imagesTs (or are skipped if ``labelled_only``).
    """
    root = _require_dir(root, "--images/--lidc")
    labels = _label_index(labels_dir)
    found = Found()
    used_labels = set()
    for patient, series in sorted(series_by_patient(scan_dicom(root, num_workers)).items()):
        eligible = [s for s in series if why_not_ct_volume(s, min_slices, max_slice_thickness) is None]
        case = _file_name_part(patient) or series[0].series_uid
        if not eligible:
            reasons = "; ".join(f"{s.series_uid}: {why_not_ct_volume(s, min_slices, max_slice_thickness)}"
                                for s in series)
            folder = str(Path(series[0].slices[0].path if series[0].slices else series[0].ignored[0][0]).parent)
            found.cases.append(CaseSpec(case, (folder,), skip_reason=f"no usable CT series ({reasons})"))
            continue
        labelled = [s for s in eligible if s.series_uid in labels]
        chosen = choose_series(labelled or eligible)
        label = labels.get(chosen.series_uid)
        used_labels.add(chosen.series_uid)
        files = tuple(s.path for s in chosen.slices)
        skip = "no label for this series" if labelled_only and label is None else None
        found.cases.append(CaseSpec(case, files, label, series_uid=chosen.series_uid, skip_reason=skip))
    found.unmatched = [f"{p}: no CT series with this SeriesInstanceUID was chosen"
                       for uid, p in labels.items() if uid not in used_labels and not uid.upper().startswith("CASE")]
    return found


def _file_name_part(text: str) -> str:
    """``text`` as part of a file name: every run of characters other than letters, digits, '.', '_' and '-'
    becomes one '_' (a multi-valued PatientID ``x\\y`` gives case ``x_y``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")


_EXACT09_CASE = re.compile(r"^(CASE\d+)", re.IGNORECASE)


def _exact09_key(path: Path) -> str | None:
    match = _EXACT09_CASE.match(path.name)
    return match.group(1).upper() if match else None


def exact09_cases(root: str | os.PathLike, labels_dir: str | os.PathLike | None = None,
                  labelled_only: bool = False) -> Found:
    """DICOM folders ``CASE01``..``CASE40`` under ``root``; labels ``CASExx*.mhd``/``.nii.gz`` in ``labels_dir``."""
    root = _require_dir(root, "--images/--exact09")
    labels = _label_index(labels_dir, _exact09_key)
    folders = {}
    for path in sorted(root.iterdir()):
        key = _exact09_key(path)
        if key and path.is_dir():
            _add_unique(folders, key, str(path))
    found = Found()
    for case, folder in folders.items():
        label = labels.get(case)
        skip = "no label for this case" if labelled_only and label is None else None
        found.cases.append(CaseSpec(case, (folder,), label, skip_reason=skip))
    found.unmatched = [f"{p}: no CASE folder for this label" for c, p in labels.items() if c not in folders]
    return found


def bas_cases(lidc_root: str | os.PathLike, exact09_root: str | os.PathLike, labels_dir: str | os.PathLike,
              max_slice_thickness: float | None = None, min_slices: int = 10, num_workers: int = 1) -> Found:
    """The paper's 90 labelled scans: LIDC series labelled ``<SeriesInstanceUID>.nii.gz`` and EXACT'09
    training cases labelled ``CASExx.nii.gz``, all from one BAS labels folder; unlabelled scans are skipped."""
    _require_dir(labels_dir, "--labels")
    lidc = lidc_cases(lidc_root, labels_dir, max_slice_thickness, min_slices, num_workers, labelled_only=True)
    exact = exact09_cases(exact09_root, labels_dir, labelled_only=True)
    labels_used = {c.label for c in lidc.cases + exact.cases if c.label and not c.skip_reason}
    unmatched = [f"{p}: matches no LIDC series or EXACT'09 case" for p in _label_index(labels_dir).values()
                 if p not in labels_used]
    return Found(lidc.cases + exact.cases, unmatched)


def _named_pairs(root: str | os.PathLike, pattern: re.Pattern, flag: str) -> tuple[dict, dict]:
    """Image and label files under ``root`` (recursively) whose names match ``pattern`` (group 1 = case).

    A file is a label when a folder on its path (below ``root``) is named like a label folder
    (``labelsTr``, ``labels``, ``label``, ``gt``, ``mask``, ``masks``, ...)."""
    root = _require_dir(root, flag)
    images: dict[str, str] = {}
    labels: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        parts = [p.lower() for p in Path(dirpath).relative_to(root).parts]
        is_label = any("label" in p or p in ("gt", "mask", "masks", "groundtruth", "ground_truth") for p in parts)
        for name in sorted(filenames):
            match = pattern.match(name)
            if match:
                _add_unique(labels if is_label else images, match.group(1), os.path.join(dirpath, name))
    return images, labels


def _paired(images: dict, labels: dict, skip: dict[str, str]) -> Found:
    found = Found([CaseSpec(case, (path,), labels.get(case), skip_reason=skip.get(case))
                   for case, path in sorted(images.items())])
    found.unmatched = [f"{p}: label without an image" for c, p in labels.items() if c not in images]
    return found


_ATM22_NAME = re.compile(r"^(ATM_\d+)(?:_0000)?\.nii(?:\.gz)?$")
_AIIB23_NAME = re.compile(r"^(AIIB(?:23)?_\d+)(?:_0000)?\.nii(?:\.gz)?$")


def atm22_cases(root: str | os.PathLike, include_withdrawn: bool = False) -> Found:
    """ATM'22: ``*/imagesTr/ATM_XXX_0000.nii.gz`` with ``*/labelsTr/ATM_XXX_0000.nii.gz`` (labels written as
    ``ATM_XXX.nii.gz``); validation/test images without labels go to imagesTs; ATM_164 skipped by default."""
    images, labels = _named_pairs(root, _ATM22_NAME, "--root")
    return _paired(images, labels, {} if include_withdrawn else WITHDRAWN_ATM22)


def aiib23_cases(root: str | os.PathLike) -> Found:
    """AIIB23: ``AIIB_XXX.nii.gz`` (or ``AIIB23_XXX``) images, labels of the same name in a label folder."""
    images, labels = _named_pairs(root, _AIIB23_NAME, "--root")
    return _paired(images, labels, {})
