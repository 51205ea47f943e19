"""``benchmarks/sim_to_real.py --model`` on the tiny demo's model: the real CT in tests/data -> one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "cip_ct64"


def test_a_trained_model_scores_the_real_ct_and_prints_one_line(tiny_demo, demo, tmp_path: Path) -> None:
    demo_dir, finished = tiny_demo
    assert finished.returncode == 0, finished.stderr[-3000:]
    (model,) = demo_dir.glob("nnUNet_results/Dataset990_*/nnUNetTrainerAirwayFRAD_Budget__*")
    env = demo.env(PYTHONPATH=str(ROOT))  # the user's environment, no nnU-Net folders
    argv = [sys.executable, str(ROOT / "benchmarks" / "sim_to_real.py"), "--image", str(DATA / "ct-64.nrrd"),
            "--label", str(DATA / "lm-64.nrrd"), "--workdir", str(tmp_path / "w"), "--model", str(model),
            "--device", "cpu"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"sim-to-real: TD \S+ BD \S+ precision \S+ volume ratio \d+\.\d\d", line), line
    scores = json.loads((tmp_path / "w" / "real" / "sim_to_real.json").read_text())
    assert scores["volume_ratio"] >= 0.0
    assert (tmp_path / "w" / "real" / "prediction" / "real.nii.gz").exists()
    assert not (tmp_path / "w" / "phantoms").exists()  # nothing trained
    stages = json.loads((tmp_path / "w" / "state.json").read_text())["stages"]
    assert list(stages) == ["import_real", "predict_real", "evaluate_real"]
