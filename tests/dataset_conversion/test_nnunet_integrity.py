"""A converted data set (real DICOM chest CT + a NIfTI case) passes nnU-Net's own dataset integrity check.

Uses ``nnUNetv2_extract_fingerprint --verify_dataset_integrity`` (the same verify_dataset_integrity as
``nnUNetv2_plan_and_preprocess``, about half its time on 2 cores) in a subprocess with nnU-Net's folders in
tmp_path. nnUNet_n_proc_DA is left alone (0 breaks nnUNetv2_plan_and_preprocess, see the design notes).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nnunet_airway.dataset_conversion import convert_folder

pytestmark = pytest.mark.slow


def test_converted_dataset_passes_nnunet_verify_dataset_integrity(tmp_path: Path, make, nnunet_dirs) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    make.write_cip_case(images, labels)
    make.write_case_files(images, labels, "tiny", shape_zyx=(16, 24, 24))
    result = convert_folder(images, labels, 902, "Verify", progress=False, strict=True)
    assert sorted(result.converted) == ["cip", "tiny"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["nnUNetv2_extract_fingerprint", "-d", "902", "--verify_dataset_integrity", "-np", "1"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "your dataset is most likely OK" in run.stdout
    fingerprint = json.loads((nnunet_dirs["nnUNet_preprocessed"] / "Dataset902_Verify" /
                              "dataset_fingerprint.json").read_text())
    spacings = sorted(tuple(round(v, 3) for v in s) for s in fingerprint["spacings"])  # (z, y, x) mm
    assert spacings == [(1.25, 0.8, 0.7), (3.987, 4.172, 4.172)]
