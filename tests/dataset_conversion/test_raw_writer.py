"""The nnU-Net raw writer through the `folder` source: layout, dataset.json, checks, resuming, ownership."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_airway.dataset_conversion import CaseSpec, ConversionOptions, convert_folder, write_raw_dataset
from nnunet_airway.dataset_conversion.raw_writer import _write_case_files
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_image


def test_layout_and_dataset_json(tmp_path: Path, make) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    make.write_case_files(images, labels, "a")
    make.write_case_files(images, labels, "b", image_name="b_0000.nrrd", label_name="b.mha")
    make.write_series(images / "c", make.ct_volume((10, 16, 16), seed=2))
    write_image(labels / "c.nrrd", make.airway_label(make.ct_volume((10, 16, 16), seed=2)),
                Geometry((0.7, 0.8, 1.25), (-10.0, -20.0, -30.0)))
    make.write_case_files(images, None, "unlabelled")
    result = convert_folder(images, labels, 12, "Mini", out_root=tmp_path / "raw", progress=False)

    root = tmp_path / "raw" / "Dataset012_Mini"
    assert result.dataset_dir == root
    assert sorted(p.name for p in (root / "imagesTr").iterdir()) == ["a_0000.nii.gz", "b_0000.nii.gz", "c_0000.nii.gz"]
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    assert [p.name for p in (root / "imagesTs").iterdir()] == ["unlabelled_0000.nii.gz"]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "airway": 1}
    assert meta["numTraining"] == 3
    assert meta["file_ending"] == ".nii.gz"
    assert {"name", "description", "reference", "licence"} <= meta.keys()
    report = json.loads((root / "conversion_report.json").read_text())
    assert {c: e["status"] for c, e in report["cases"].items()} == dict.fromkeys(["a", "b", "c", "unlabelled"],
                                                                                 "converted")
    assert report["cases"]["c"]["series_instance_uid"]
    for case in ("a", "b", "c"):
        image, image_sitk = make.read_nifti(root / "imagesTr" / f"{case}_0000.nii.gz")
        label, label_sitk = make.read_nifti(root / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(label, make.airway_label(image))
        assert label.dtype == np.uint8
        assert label_sitk.GetSpacing() == image_sitk.GetSpacing()
        assert label_sitk.GetOrigin() == image_sitk.GetOrigin()


def test_real_dicom_with_cip_airway_label_converts(tmp_path: Path, make) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    make.write_cip_case(images, labels, label_suffix=".nrrd")
    result = convert_folder(images, labels, 64, "CIP", out_root=tmp_path / "raw", progress=False)
    assert result.converted == ["cip"]
    ct, ct_image = make.read_nifti(result.dataset_dir / "imagesTr" / "cip_0000.nii.gz")
    label, _ = make.read_nifti(result.dataset_dir / "labelsTr" / "cip.nii.gz")
    reference = sitk.ReadImage(str(make.cip_data / "ct-64.nrrd"))
    np.testing.assert_array_equal(ct, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(ct_image.GetOrigin(), reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(ct_image.GetSpacing(), reference.GetSpacing(), rtol=1e-5)
    assert int(label.sum()) == 555


def test_label_on_another_grid_is_rejected_with_both_geometries(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    make.write_case_files(images, labels, "shifted")
    shifted = Geometry((0.7, 0.8, 1.25), (-10.0, -20.0, -25.0))
    write_image(labels / "shifted.nii.gz", make.airway_label(make.ct_volume()), shifted)
    flipped = Geometry((0.7, 0.8, 1.25), (-10.0, -20.0, -30.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    make.write_case_files(images, labels, "flipped")
    write_image(labels / "flipped.nii.gz", make.airway_label(make.ct_volume()), flipped)
    result = convert_folder(images, labels, 5, "Grid", out_root=tmp_path / "raw", progress=False)
    assert result.converted == ["case0"]
    reason = result.rejected["shifted"]
    assert "origin (-10.0, -20.0, -30.0) vs (-10.0, -20.0, -25.0)" in reason
    assert "CT: shape (10, 16, 16), spacing" in reason and "label: shape (10, 16, 16), spacing" in reason
    assert "direction" in result.rejected["flipped"]
    assert not (result.dataset_dir / "imagesTr" / "shifted_0000.nii.gz").exists()
    assert json.loads((result.dataset_dir / "dataset.json").read_text())["numTraining"] == 1
    with pytest.raises(DataError, match="not on one grid"):
        convert_folder(images, labels, 5, "Grid", out_root=tmp_path / "raw", progress=False, strict=True)


def test_label_values_besides_0_and_1_are_named_or_binarised(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    label, geometry = make.read_nifti(labels / "case0.nii.gz")[0], Geometry((0.7, 0.8, 1.25), (-10.0, -20.0, -30.0))
    label[label == 1] = 2
    label[0, 0, :3] = 7
    write_image(labels / "case0.nii.gz", label, geometry)
    with pytest.raises(DataError, match=r"case0 rejected: .*case0.nii.gz: label values 2, 7 besides 0 and 1"):
        convert_folder(images, labels, 6, "Values", out_root=tmp_path / "raw1", progress=False)
    result = convert_folder(images, labels, 6, "Values", out_root=tmp_path / "raw2", progress=False,
                            binarize_labels=True)
    converted, _ = make.read_nifti(result.dataset_dir / "labelsTr" / "case0.nii.gz")
    np.testing.assert_array_equal(converted, (label > 0).astype(np.uint8))


def test_no_converted_case_is_an_error(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    (labels / "case0.nii.gz").write_bytes(b"broken")
    with pytest.raises(DataError, match="no case was converted"):
        convert_folder(images, labels, 8, "Broken", out_root=tmp_path / "raw", progress=False)


def test_second_run_skips_converted_cases_and_overwrite_redoes_them(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    first = convert_folder(images, labels, 9, "Again", out_root=tmp_path / "raw", progress=False)
    assert sorted(first.converted) == ["case0", "case1"]
    output = first.dataset_dir / "imagesTr" / "case0_0000.nii.gz"
    stamp = output.stat().st_mtime_ns
    make.write_case_files(images, labels, "case2", seed=2)
    second = convert_folder(images, labels, 9, "Again", out_root=tmp_path / "raw", progress=False)
    assert second.converted == ["case2"]
    assert sorted(second.already_converted) == ["case0", "case1"]
    assert output.stat().st_mtime_ns == stamp
    third = convert_folder(images, labels, 9, "Again", out_root=tmp_path / "raw", progress=False, overwrite=True)
    assert sorted(third.converted) == ["case0", "case1", "case2"]
    assert output.stat().st_mtime_ns != stamp
    report = json.loads(third.report_path.read_text())
    assert sorted(report["cases"]) == ["case0", "case1", "case2"]


def test_a_case_missing_from_the_report_is_converted_again_and_temporaries_removed(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    result = convert_folder(images, labels, 10, "Resume", out_root=tmp_path / "raw", progress=False)
    report = json.loads(result.report_path.read_text())
    del report["cases"]["case1"]  # as if the run had stopped before recording case1
    result.report_path.write_text(json.dumps(report))
    (result.dataset_dir / "labelsTr" / "case1.nii.gz").unlink()
    stale = result.dataset_dir / "imagesTr" / ".case1.abc123.tmp.nii.gz"
    stale.write_bytes(b"half")
    again = convert_folder(images, labels, 10, "Resume", out_root=tmp_path / "raw", progress=False)
    assert again.converted == ["case1"] and again.already_converted == ["case0"]
    assert (again.dataset_dir / "labelsTr" / "case1.nii.gz").is_file()
    assert not stale.exists()


def test_case_files_appear_together_or_not_at_all(tmp_path: Path, make) -> None:
    geometry = Geometry((1.0, 1.0, 1.0))
    outputs = [tmp_path / "imagesTr" / "x_0000.nii.gz", tmp_path / "labelsTr" / "x.nii.gz"]
    with pytest.raises(ValueError):  # the label cannot be written: a 2-D array
        _write_case_files(outputs, [(make.ct_volume(), geometry), (np.zeros((4, 4), np.uint8), geometry)])
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_refuses_a_folder_of_another_data_set(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    raw = tmp_path / "raw"
    (raw / "Dataset020_Foreign" / "imagesTr").mkdir(parents=True)
    (raw / "Dataset020_Foreign" / "dataset.json").write_text("{}")
    with pytest.raises(DataError, match="no conversion_report.json, so it belongs to another data set"):
        convert_folder(images, labels, 20, "Foreign", out_root=raw, progress=False)
    with pytest.raises(DataError, match="id 020 is already taken by Dataset020_Foreign"):
        convert_folder(images, labels, 20, "Other", out_root=raw, progress=False)
    convert_folder(images, labels, 21, "Mine", out_root=raw, progress=False)
    spec = CaseSpec("case0", (str(images / "case0.nii.gz"),), str(labels / "case0.nii.gz"))
    with pytest.raises(DataError, match="converted from source 'folder', not 'atm22'"):
        write_raw_dataset([spec], ConversionOptions(21, "Mine", source="atm22", out_root=raw, progress=False))


def test_out_root_defaults_to_nnunet_raw(tmp_path: Path, make, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(DataError, match="nnUNet_raw is not set"):
        convert_folder(images, labels, 3, "Env", progress=False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "envraw"))
    assert convert_folder(images, labels, 3, "Env", progress=False).dataset_dir == tmp_path / "envraw" / "Dataset003_Env"


def test_duplicate_case_names_are_an_error(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    make.write_case_files(images, None, "case0", image_name="case0.nrrd")
    with pytest.raises(DataError, match="both give case 'case0'"):
        convert_folder(images, labels, 4, "Dup", out_root=tmp_path / "raw", progress=False)


def test_paper_split_is_seeded_and_writes_fold_0(tmp_path: Path, make, nnunet_dirs) -> None:
    images, labels = make.case_folders(tmp_path, 10)
    result = convert_folder(images, labels, 30, "Paper", progress=False, paper_split_seed=1, num_workers=2)
    root = result.dataset_dir
    assert len(list((root / "imagesTr").iterdir())) == 8 and len(list((root / "imagesTs").iterdir())) == 2
    assert len(list((root / "labelsTs").iterdir())) == 2
    assert result.splits_path == root / "splits_final.json"
    assert "mkdir -p" in result.instructions[0] and "Dataset030_Paper" in result.instructions[0]
    folds = json.loads(result.splits_path.read_text())
    assert len(folds) == 1 and len(folds[0]["train"]) == 7 and len(folds[0]["val"]) == 1
    trained = {p.name[:-12] for p in (root / "imagesTr").iterdir()}
    assert set(folds[0]["train"]) | set(folds[0]["val"]) == trained
    # same seed, same split, nothing converted again; the preprocessed folder exists now: fold 0 goes there
    (nnunet_dirs["nnUNet_preprocessed"] / "Dataset030_Paper").mkdir()
    again = convert_folder(images, labels, 30, "Paper", progress=False, paper_split_seed=1)
    assert again.converted == [] and again.instructions == []
    assert again.splits_path == nnunet_dirs["nnUNet_preprocessed"] / "Dataset030_Paper" / "splits_final.json"
    assert json.loads(again.splits_path.read_text()) == folds
    # another seed moves cases between imagesTr and imagesTs without leaving copies behind
    moved = convert_folder(images, labels, 30, "Paper", progress=False, paper_split_seed=2)
    assert moved.converted
    assert len(list((root / "imagesTr").iterdir())) == 8 and len(list((root / "imagesTs").iterdir())) == 2


def test_paper_split_of_90_cases_is_63_9_18() -> None:
    from nnunet_airway.dataset_conversion.splits import paper_split

    ids = [f"c{i:02d}" for i in range(90)]
    split = paper_split(ids, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (63, 9, 18)
    assert set(split.train) | set(split.val) | set(split.test) == set(ids)
    assert paper_split(list(reversed(ids)), seed=0) == split
    assert paper_split(ids, seed=1) != split


@pytest.mark.slow
def test_cli_converts_and_reports_errors_in_one_line(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_raw"}
    args = ["nnunet-airway", "convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "40"]
    result = subprocess.run(args, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nnunet-airway convert: error: nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw or pass "
        "--out-root DIR"]
    result = subprocess.run(args + ["--out-root", str(tmp_path / "raw"), "-n", "Cli"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "1 converted" in result.stdout
    assert (tmp_path / "raw" / "Dataset040_Cli" / "labelsTr" / "case0.nii.gz").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("source", ["folder", "lidc", "exact09", "bas", "atm22", "aiib23"])
def test_every_source_has_help(source: str) -> None:
    result = subprocess.run(["nnunet-airway", "convert", source, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "-d ID" in result.stdout and "--overwrite" in result.stdout and "-np N" in result.stdout


def test_inputs_that_cannot_be_used_are_listed_in_the_report(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    make.write_case_files(tmp_path / "elsewhere", labels, "orphan")
    make.write_series(labels / "case1", make.ct_volume())
    make.write_series(images / "case1", make.ct_volume())
    result = convert_folder(images, labels, 41, "Unused", out_root=tmp_path / "raw", progress=False)
    not_used = json.loads(result.report_path.read_text())["inputs"]["not_used"]
    assert any("orphan.nii.gz: label without an image" in line for line in not_used)
    assert any("case1: a folder; labels must be NIfTI, NRRD or MHA/MHD files" in line for line in not_used)
    assert result.report["cases"]["case1"]["split"] == "test"
