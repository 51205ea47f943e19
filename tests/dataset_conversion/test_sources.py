"""Each source converts a miniature of its real on-disk layout (through the real `nnunet-airway convert` code)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.cli import main
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image

THIN = (0.7, 0.8, 0.625)
ORIGIN = (-10.0, -20.0, -30.0)


def _report(raw: Path, folder: str) -> dict:
    return json.loads((raw / folder / "conversion_report.json").read_text())


def _statuses(report: dict) -> dict[str, str]:
    return {case: entry["status"] for case, entry in report["cases"].items()}


def _lidc(root: Path, labels: Path, make) -> dict[str, str]:
    """LIDC-IDRI: patient/study/series folders (old UID names and new descriptive names), CR/DX series beside the
    CT, a thick and a thin CT reconstruction, a patient with radiographs only. Returns case -> labelled UID."""
    labels.mkdir(parents=True, exist_ok=True)
    p1 = root / "LIDC-IDRI-0001" / "01-01-2000-NA-Chest-30178"
    thin = make.write_series(p1 / "3000566.000000-NA-03192", make.ct_volume((10, 16, 16), 1), spacing_xyz=THIN,
                             patient_id="LIDC-IDRI-0001", name=lambda k: f"1-{k + 1:03d}.dcm")
    make.write_series(p1 / "3000923.000000-NA-62357", make.ct_volume((12, 16, 16), 2), spacing_xyz=(0.7, 0.8, 2.5),
                      patient_id="LIDC-IDRI-0001", name=lambda k: f"1-{k + 1:03d}.dcm")
    (p1 / "3000800.000000-NA-22216").mkdir()
    make.write_non_ct_objects(p1 / "3000800.000000-NA-22216", patient_id="LIDC-IDRI-0001")
    p2 = root / "LIDC-IDRI-0002" / "1.3.6.1.4.1.14519.5.2.1.6279.6001.4903" / "1.3.6.1.4.1.14519.5.2.1.6279.6001.6190"
    make.write_series(p2, make.ct_volume((10, 16, 16), 3), spacing_xyz=THIN, patient_id="LIDC-IDRI-0002",
                      name=lambda k: f"{k:06d}.dcm")
    p3 = root / "LIDC-IDRI-0003" / "01-01-2000-NA-XRAY-1"
    p3.mkdir(parents=True)
    make.write_non_ct_objects(p3, patient_id="LIDC-IDRI-0003")
    import pydicom

    uid = pydicom.dcmread(thin[0]).SeriesInstanceUID
    write_image(labels / f"{uid}.nii.gz", make.airway_label(make.ct_volume((10, 16, 16), 1)), Geometry(THIN, ORIGIN))
    return {"LIDC-IDRI-0001": uid}


def _exact09(root: Path, labels: Path, make) -> None:
    """EXACT'09: DICOM folders CASExx, slice files without extension whose names do not sort in slice order."""
    labels.mkdir(parents=True, exist_ok=True)
    for case, seed in (("CASE01", 4), ("CASE21", 5)):
        order = [3, 7, 0, 9, 1, 5, 2, 8, 6, 4]
        make.write_series(root / case, make.ct_volume((10, 16, 16), seed), spacing_xyz=(0.6, 0.6, 1.0),
                          name=lambda k, order=order: str(order[k] * 11 + 1), patient_id=case)
    write_image(labels / "CASE01.mhd", make.airway_label(make.ct_volume((10, 16, 16), 4)),
                Geometry((0.6, 0.6, 1.0), ORIGIN))


def test_lidc_finds_series_by_header_and_routes_unlabelled_scans_to_test(tmp_path: Path, make) -> None:
    uids = _lidc(tmp_path / "LIDC", tmp_path / "bas", make)
    raw = tmp_path / "raw"
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "--labels", str(tmp_path / "bas"),
                 "--max-slice-thickness", "0.625", "-d", "101", "--out-root", str(raw), "--no-progress"]) == 0
    report = _report(raw, "Dataset101_LIDC")
    assert _statuses(report) == {"LIDC-IDRI-0001": "converted", "LIDC-IDRI-0002": "converted",
                                 "LIDC-IDRI-0003": "skipped"}
    assert report["cases"]["LIDC-IDRI-0001"]["series_instance_uid"] == uids["LIDC-IDRI-0001"]
    assert report["cases"]["LIDC-IDRI-0001"]["split"] == "train"
    assert report["cases"]["LIDC-IDRI-0002"]["split"] == "test"
    assert "Modality CR" in report["cases"]["LIDC-IDRI-0003"]["reason"]
    assert (raw / "Dataset101_LIDC" / "labelsTr" / "LIDC-IDRI-0001.nii.gz").is_file()
    assert (raw / "Dataset101_LIDC" / "imagesTs" / "LIDC-IDRI-0002_0000.nii.gz").is_file()
    image, _ = make.read_nifti(raw / "Dataset101_LIDC" / "imagesTr" / "LIDC-IDRI-0001_0000.nii.gz")
    np.testing.assert_array_equal(image, make.ct_volume((10, 16, 16), 1))


def test_lidc_without_thickness_limit_still_prefers_the_labelled_series(tmp_path: Path, make) -> None:
    uids = _lidc(tmp_path / "LIDC", tmp_path / "bas", make)
    raw = tmp_path / "raw"
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "--labels", str(tmp_path / "bas"),
                 "-d", "102", "--out-root", str(raw), "--no-progress", "-np", "2"]) == 0
    cases = _report(raw, "Dataset102_LIDC")["cases"]
    assert cases["LIDC-IDRI-0001"]["series_instance_uid"] == uids["LIDC-IDRI-0001"]
    # unlabelled, several CT series: the one with the most slices (the 12-slice thick one) by the rule
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "-d", "103", "--out-root", str(raw),
                 "--no-progress"]) == 0
    assert _report(raw, "Dataset103_LIDC")["cases"]["LIDC-IDRI-0001"]["shape_zyx"] == [12, 16, 16]


def test_exact09_case_folders_with_mhd_labels(tmp_path: Path, make) -> None:
    _exact09(tmp_path / "EXACT09", tmp_path / "exact_labels", make)
    raw = tmp_path / "raw"
    assert main(["convert", "exact09", "--images", str(tmp_path / "EXACT09"), "--labels",
                 str(tmp_path / "exact_labels"), "-d", "104", "--out-root", str(raw), "--no-progress"]) == 0
    root = raw / "Dataset104_EXACT09"
    image, nifti = make.read_nifti(root / "imagesTr" / "CASE01_0000.nii.gz")
    np.testing.assert_array_equal(image, make.ct_volume((10, 16, 16), 4))
    assert nifti.GetSpacing() == pytest.approx((0.6, 0.6, 1.0))
    assert (root / "labelsTr" / "CASE01.nii.gz").is_file()
    assert (root / "imagesTs" / "CASE21_0000.nii.gz").is_file()


def test_bas_joins_lidc_and_exact09_labelled_cases_with_the_paper_split(tmp_path: Path, make) -> None:
    labels = tmp_path / "BAS_labels"
    _lidc(tmp_path / "LIDC", labels, make)
    _exact09(tmp_path / "EXACT09", tmp_path / "exact_labels", make)
    write_image(labels / "CASE01.nii.gz", make.airway_label(make.ct_volume((10, 16, 16), 4)),
                Geometry((0.6, 0.6, 1.0), ORIGIN))
    extra = tmp_path / "EXACT09" / "CASE02"  # a third labelled scan so the split has train, val and test
    make.write_series(extra, make.ct_volume((10, 16, 16), 6), spacing_xyz=(0.6, 0.6, 1.0), patient_id="CASE02")
    write_image(labels / "CASE02.nii.gz", make.airway_label(make.ct_volume((10, 16, 16), 6)),
                Geometry((0.6, 0.6, 1.0), ORIGIN))
    raw = tmp_path / "raw"
    assert main(["convert", "bas", "--lidc", str(tmp_path / "LIDC"), "--exact09", str(tmp_path / "EXACT09"),
                 "--labels", str(labels), "-d", "105", "--out-root", str(raw), "--no-progress", "--paper-split"]) == 0
    report = _report(raw, "Dataset105_BAS")
    assert {c for c, s in _statuses(report).items() if s == "converted"} == {"LIDC-IDRI-0001", "CASE01", "CASE02"}
    assert _statuses(report)["CASE21"] == "skipped" and _statuses(report)["LIDC-IDRI-0002"] == "skipped"
    split = report["paper_split"]
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (1, 1, 1)
    assert (raw / "Dataset105_BAS" / "labelsTs" / f"{split['test'][0]}.nii.gz").is_file()
    folds = json.loads((raw / "Dataset105_BAS" / "splits_final.json").read_text())
    assert folds == [{"train": split["train"], "val": split["val"]}]


def test_atm22_renames_labels_skips_the_withdrawn_case_and_keeps_unlabelled_for_test(tmp_path: Path, make) -> None:
    root = tmp_path / "ATM22"
    for batch, case in (("TrainBatch1", "ATM_001"), ("TrainBatch2", "ATM_164"), ("TrainBatch2", "ATM_290")):
        make.write_case_files(root / batch / "imagesTr", root / batch / "labelsTr", case,
                              image_name=f"{case}_0000.nii.gz", label_name=f"{case}_0000.nii.gz")
    make.write_case_files(root / "ValidationData", None, "ATM_301", image_name="ATM_301_0000.nii.gz")
    raw = tmp_path / "raw"
    assert main(["convert", "atm22", "--root", str(root), "-d", "106", "--out-root", str(raw), "--no-progress"]) == 0
    dataset = raw / "Dataset106_ATM22"
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == ["ATM_001.nii.gz", "ATM_290.nii.gz"]
    assert [p.name for p in (dataset / "imagesTs").iterdir()] == ["ATM_301_0000.nii.gz"]
    assert "withdrawn" in _report(raw, "Dataset106_ATM22")["cases"]["ATM_164"]["reason"]
    assert main(["convert", "atm22", "--root", str(root), "-d", "106", "--out-root", str(raw), "--no-progress",
                 "--include-withdrawn"]) == 0
    assert (dataset / "labelsTr" / "ATM_164.nii.gz").is_file()
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 3
    # without the flag again: the earlier conversion stays until --overwrite removes it
    args = ["convert", "atm22", "--root", str(root), "-d", "106", "--out-root", str(raw), "--no-progress"]
    assert main(args) == 0
    assert _statuses(_report(raw, "Dataset106_ATM22"))["ATM_164"] == "converted"
    assert main(args + ["--overwrite"]) == 0
    assert _statuses(_report(raw, "Dataset106_ATM22"))["ATM_164"] == "skipped"
    assert not (dataset / "labelsTr" / "ATM_164.nii.gz").exists()
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 2


def test_aiib23_pairs_images_with_labels_of_the_same_name(tmp_path: Path, make) -> None:
    root = tmp_path / "AIIB23"
    make.write_case_files(root / "train" / "img", root / "train" / "gt", "AIIB_001")
    make.write_case_files(root / "train" / "img", root / "train" / "gt", "AIIB23_002")
    raw = tmp_path / "raw"
    assert main(["convert", "aiib23", "--root", str(root), "-d", "107", "--out-root", str(raw), "--no-progress"]) == 0
    dataset = raw / "Dataset107_AIIB23"
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == ["AIIB23_002.nii.gz", "AIIB_001.nii.gz"]
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["AIIB23_002_0000.nii.gz",
                                                                        "AIIB_001_0000.nii.gz"]


@pytest.mark.parametrize("shift", [0.5, 0.0], ids=["interleaved half a slice apart", "same positions"])
def test_two_patients_under_one_series_uid_are_both_reported_and_never_stacked(tmp_path: Path, make,
                                                                               shift: float) -> None:
    """Two copies of one series under PatientIDs PA and PB, the same SeriesInstanceUID, PB shifted (or not) and
    300 HU brighter, new SOPInstanceUIDs: PA_0000 had the two patients' slices interleaved and PB was nowhere."""
    from pydicom.uid import generate_uid

    uid, study = generate_uid(), generate_uid()
    hu = make.ct_volume((10, 16, 16), 1)
    make.write_series(tmp_path / "LIDC" / "PA", hu, spacing_xyz=THIN, patient_id="PA", series_uid=uid,
                      study_uid=study)
    make.write_series(tmp_path / "LIDC" / "PB", hu + 300, spacing_xyz=THIN, patient_id="PB", series_uid=uid,
                      study_uid=study, origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + shift * THIN[2]))
    make.write_series(tmp_path / "LIDC" / "PC", hu, spacing_xyz=THIN, patient_id="PC")  # one that converts
    raw = tmp_path / "raw"
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "-d", "102", "--out-root", str(raw),
                 "--no-progress"]) == 0
    report = _report(raw, "Dataset102_LIDC")
    assert _statuses(report) == {"PA": "skipped", "PB": "skipped", "PC": "converted"}
    for case in ("PA", "PB"):
        reason = report["cases"][case]["reason"]
        assert "2 patients under one SeriesInstanceUID" in reason and "PA: 10 files" in reason and "PB: 10 files" in reason
    assert [p.name for p in raw.glob("Dataset102_LIDC/images*/*.nii.gz")] == ["PC_0000.nii.gz"]


def test_two_interleaved_copies_of_one_patients_series_are_refused(tmp_path: Path, make) -> None:
    from pydicom.uid import generate_uid

    uid, study = generate_uid(), generate_uid()
    hu = make.ct_volume((10, 16, 16), 1)
    for folder, shift, offset in (("a", 0.0, 0), ("b", 0.5, 300)):
        make.write_series(tmp_path / "LIDC" / folder, hu + offset, spacing_xyz=THIN, patient_id="PA", series_uid=uid,
                          study_uid=study, origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + shift * THIN[2]),
                          instance_numbers=list(range(1, 11)))
    make.write_series(tmp_path / "LIDC" / "PC", hu, spacing_xyz=THIN, patient_id="PC")
    raw = tmp_path / "raw"
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "-d", "103", "--out-root", str(raw),
                 "--no-progress"]) == 0
    report = _report(raw, "Dataset103_LIDC")
    assert _statuses(report) == {"PA": "skipped", "PC": "converted"}
    assert "two interleaved sets of slices" in report["cases"]["PA"]["reason"]


def test_a_multi_valued_patient_id_gives_a_plain_case_name(tmp_path: Path, make) -> None:
    """PatientID x\\y named the file ['x', 'y']_0000.nii.gz."""
    make.write_series(tmp_path / "LIDC" / "p", make.ct_volume((10, 16, 16), 1), spacing_xyz=THIN, patient_id="x\\y")
    raw = tmp_path / "raw"
    assert main(["convert", "lidc", "--images", str(tmp_path / "LIDC"), "-d", "104", "--out-root", str(raw),
                 "--no-progress"]) == 0
    assert [p.name for p in raw.glob("Dataset104_LIDC/images*/*.nii.gz")] == ["x_y_0000.nii.gz"]
