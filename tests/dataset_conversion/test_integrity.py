"""Conversion never keeps stale, truncated or half-written data, and says what it removed (issue 14)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.dataset_conversion import convert_folder
from nnunet_airway.errors import DataError
from nnunet_airway.image_io import read_image
from nnunet_airway.writing import write_image


def test_an_edited_source_is_converted_again(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    first = convert_folder(images, labels, 50, "Edit", out_root=tmp_path / "raw", progress=False)
    label_path = labels / "case0.nii.gz"
    label, geometry = read_image(label_path)
    edited = label.copy()
    edited[0] = 1
    write_image(label_path, edited, geometry)  # same name, new content
    again = convert_folder(images, labels, 50, "Edit", out_root=tmp_path / "raw", progress=False)
    assert again.converted == ["case0"] and again.already_converted == ["case1"]
    np.testing.assert_array_equal(read_image(first.dataset_dir / "labelsTr" / "case0.nii.gz")[0], edited)


def test_a_removed_source_takes_its_files_count_and_split_with_it(tmp_path: Path, make, nnunet_dirs) -> None:
    images, labels = make.case_folders(tmp_path, 5)
    first = convert_folder(images, labels, 51, "Gone", progress=False, paper_split_seed=0)
    root = first.dataset_dir
    split_file = first.splits_path
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 4
    gone = json.loads(first.report_path.read_text())["paper_split"]["train"][0]
    (images / f"{gone}.nii.gz").unlink()
    (labels / f"{gone}.nii.gz").unlink()
    again = convert_folder(images, labels, 51, "Gone", progress=False, overwrite=True)  # and no --paper-split
    assert again.removed == {gone: "its source is gone; its files were deleted"}
    assert not any(gone in p.name for p in root.rglob("*.nii.gz"))
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 4  # all four left are training now
    report = json.loads(again.report_path.read_text())
    assert gone not in report["cases"] and gone in report["removed"] and "paper_split" not in report
    assert not split_file.exists() and any("paper split of an earlier run" in line for line in again.instructions)


@pytest.mark.slow
def test_the_cli_reports_removed_cases(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    args = [sys.executable, "-m", "nnunet_airway", "convert", "folder", "--images", str(images), "--labels",
            str(labels), "-d", "52", "--out-root", str(tmp_path / "raw"), "--no-progress"]
    assert subprocess.run(args, capture_output=True).returncode == 0
    (images / "case1.nii.gz").unlink()
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1 removed (sources gone)" in done.stdout and "removed case1" in done.stdout


def test_a_truncated_source_is_rejected_not_converted(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    data = (images / "case1.nii.gz").read_bytes()
    (images / "case1.nii.gz").write_bytes(data[: len(data) // 2])
    result = convert_folder(images, labels, 53, "Cut", out_root=tmp_path / "raw", progress=False)
    assert result.converted == ["case0"]
    assert "damaged or cut short" in result.rejected["case1"]


def test_a_nan_nifti_source_is_rejected(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 2)
    ct, geometry = read_image(images / "case1.nii.gz")
    ct = ct.astype(np.float32)
    ct[2, 3, 4] = np.nan
    write_image(images / "case1.nii.gz", ct, geometry)
    result = convert_folder(images, labels, 54, "NaN", out_root=tmp_path / "raw", progress=False)
    assert "1 voxels are NaN or infinite" in result.rejected["case1"]


def test_nothing_converted_leaves_no_folder_and_a_plain_file_does_not_block_the_id(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    (labels / "case0.nii.gz").write_bytes(b"broken")
    raw = tmp_path / "raw"
    with pytest.raises(DataError, match="no case was converted .*nothing was kept"):
        convert_folder(images, labels, 55, "First", out_root=raw, progress=False)
    assert list(raw.iterdir()) == []
    (raw / "Dataset055_notes.txt").write_text("a file, not a data set")
    make.write_case_files(images, labels, "case0")
    assert convert_folder(images, labels, 55, "Second", out_root=raw, progress=False).converted == ["case0"]


def test_labels_are_optional_for_folders(tmp_path: Path, make) -> None:
    images, _ = make.case_folders(tmp_path, 1)
    done = subprocess.run([sys.executable, "-m", "nnunet_airway", "convert", "folder", "--images", str(images),
                           "-d", "56", "--out-root", str(tmp_path / "raw"), "--no-progress"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "raw" / "Dataset056_Airway" / "imagesTs" / "case0_0000.nii.gz").is_file()


def test_a_rerun_with_nothing_to_do_writes_nothing(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    first = convert_folder(images, labels, 57, "Quiet", out_root=tmp_path / "raw", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in first.dataset_dir.rglob("*") if p.is_file()}
    again = convert_folder(images, labels, 57, "Quiet", out_root=tmp_path / "raw", progress=False)
    assert again.already_converted == ["case0"]
    assert {p: p.stat().st_mtime_ns for p in first.dataset_dir.rglob("*") if p.is_file()} == stamps


def _cli(args: list[str], file_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run([sys.executable, "-m", "nnunet_airway", *args], capture_output=True, text=True,
                          preexec_fn=limit if file_limit else None)


@pytest.mark.slow
def test_a_short_write_under_ulimit_f_fails_in_one_line_and_keeps_no_file(tmp_path: Path, make) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    for i in range(2):
        make.write_case_files(images, labels, f"case{i}", shape_zyx=(40, 64, 64), seed=i)
    raw = tmp_path / "raw"
    args = ["convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "58", "--out-root",
            str(raw), "--no-progress"]
    done = _cli(args, file_limit=20_000)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and lines[-1].startswith("nnunet-airway convert: error: ")
    assert "ulimit -f" in lines[-1]
    assert not list(raw.rglob("*.nii.gz")) and not list(raw.rglob(".*tmp*"))
    rerun = _cli(args)  # with room again, the rerun converts both cases instead of trusting the failed run
    assert rerun.returncode == 0 and "2 converted" in rerun.stdout


@pytest.mark.parametrize("where", ["file", "report_list"])
def test_unusable_outputs_are_one_line_errors(tmp_path: Path, make, where: str) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    raw = tmp_path / "raw"
    if where == "file":
        raw.write_text("not a folder")
    else:
        (raw / "Dataset059_Airway").mkdir(parents=True)
        (raw / "Dataset059_Airway" / "conversion_report.json").write_text("[]")
    done = _cli(["convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "59", "--out-root",
                 str(raw), "--no-progress"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_an_output_under_a_file_is_a_one_line_error(tmp_path: Path, make) -> None:
    # root ignores permissions, so "cannot write here" is made with a path that runs through a regular file
    images, labels = make.case_folders(tmp_path, 1)
    (tmp_path / "plain").write_text("x")
    done = _cli(["convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "60", "--out-root",
                 str(tmp_path / "plain" / "raw"), "--no-progress"])
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "plain" in done.stderr
    assert os.path.isfile(tmp_path / "plain")


def test_a_data_set_folder_inside_a_source_or_holding_one_is_refused(tmp_path: Path, make) -> None:
    images, labels = make.case_folders(tmp_path, 1)
    before = sorted(p.name for p in images.iterdir())
    inside = _cli(["convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "61", "--out-root",
                   str(images), "--no-progress"])
    assert inside.returncode == 1 and "would write into the source folder --images" in inside.stderr, inside.stderr
    assert sorted(p.name for p in images.iterdir()) == before
    held = tmp_path / "raw" / "Dataset061_X" / "my_images"  # the sources inside the folder --overwrite rewrites
    held.parent.mkdir(parents=True)
    images.rename(held)
    holding = _cli(["convert", "folder", "--images", str(held), "--labels", str(labels), "-d", "61", "-n", "X",
                    "--out-root", str(tmp_path / "raw"), "--overwrite", "--no-progress"])
    assert holding.returncode == 1 and "lies inside the data set folder" in holding.stderr, holding.stderr
    assert sorted(p.name for p in held.iterdir()) == before


def test_a_vector_image_is_rejected_alone_and_the_rest_converts(tmp_path: Path, make) -> None:
    """A 2-component CT aborted the whole `convert folder` with a traceback and no dataset.json."""
    import SimpleITK as sitk

    images, labels = make.case_folders(tmp_path, 3)
    vector = sitk.GetImageFromArray(np.zeros((10, 16, 16, 2), np.int16), isVector=True)
    sitk.WriteImage(vector, str(images / "case1.nii.gz"))
    done = _cli(["convert", "folder", "--images", str(images), "--labels", str(labels), "-d", "62", "--out-root",
                 str(tmp_path / "raw"), "--no-progress"])
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "rejected case1" in done.stderr and "2 components per voxel" in done.stderr
    (dataset,) = (tmp_path / "raw").glob("Dataset062_*")
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 2
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["case0_0000.nii.gz", "case2_0000.nii.gz"]
