"""``benchmarks/sim_to_real.py`` on tiny settings: phantoms -> nnU-Net -> the real CT in tests/data -> one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_airway.demo.nnunet_runner import NNUNET_FOLDER_VARIABLES

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "cip_ct64"


def test_tiny_sim_to_real_run_prints_the_scores(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in NNUNET_FOLDER_VARIABLES}
    env.pop("nnUNet_extTrainer", None)
    env.update({"OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)})
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sim_to_real.py"), "--image", str(DATA / "ct-64.nrrd"),
         "--label", str(DATA / "lm-64.nrrd"), "--workdir", str(tmp_path / "w"), "--cases", "2",
         "--shape", "64", "80", "80", "--budget-minutes", "0.05", "--iterations-per-epoch", "2",
         "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"sim-to-real: TD \S+ BD \S+ precision \S+ volume ratio \d+\.\d\d", line), line
    scores = json.loads((tmp_path / "w" / "real" / "sim_to_real.json").read_text())
    assert scores["volume_ratio"] >= 0.0
    assert (tmp_path / "w" / "real" / "prediction" / "real.nii.gz").exists()
