"""benchmarks/gpu_suite.py --dry-run: every phase of the GPU suite runs on CPU at tiny sizes and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_runs_every_phase_and_writes_the_report(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--dry-run",
                             "--budget-s", "500", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    report_path = tmp_path / "gpu_suite_dry-run.json"
    assert report_path.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    failed = [r for r in report["runs"] if not r["ok"]] + [s for s in report["train"]["steps"] if not s["ok"]]
    assert result.returncode == 0 and report["ok"], json.dumps(failed, indent=1)[-4000:] + str(report["tests"])
    steps = {(r["patch"], r["mode"], r["trainer"]) for r in report["steps"]}
    assert len(steps) == 5 + 1  # eager: plain + four airway trainers; compiled: FR+AD
    assert all(r["ms_per_step_x_plain"] > 0 for r in report["steps"] if r["mode"] == "eager")
    assert {r["trainer"] for r in report["predictions"]} == {"nnUNetTrainer", "nnUNetTrainerAirwayBaseline",
                                                             "nnUNetTrainerAirwayFRAD"}
    assert all(r["finite"] for r in report["predictions"])
    assert report["train"]["steps"][-1]["written"] == ["phantom_100.nii.gz"]
    assert report["train"]["plans"] == "nnUNetAirwayPlansSuite"
    # the real ATM'26 configuration, planned by the airway planner for each backbone (the dry run's small patch)
    assert report["atm26_plans"]["ok"] and set(report["atm26_plans"]["plans"]) == {"plain", "resenc-m"}
    networks = {(r["patch"], r["mode"], r["trainer"]): r["network"] for r in report["atm26"]}
    assert len(networks) == 2 * 3  # eager: nnU-Net, Baseline, FR+AD per backbone (compiled on a GPU only)
    assert networks["ATM'26 plain", "eager", "nnUNetTrainerAirwayFRAD"] == "FRADUNet"
    assert networks["ATM'26 plain", "eager", "nnUNetTrainer"] == "PlainConvUNet"
    assert networks["ATM'26 resenc-m", "eager", "nnUNetTrainer"] == "ResidualEncoderUNet"
    assert all(r["estimate_gib"] > 0 for r in report["atm26"])
    assert all(r["ms_per_step_x_baseline"] > 0 for r in report["atm26"] if r["mode"] == "eager")
    assert (tmp_path / "gpu_suite_dry-run.md").read_text().startswith("# GPU suite (dry run")
