"""Benchmark: CPU training speed of a thin-branch crop row with nnU-Net's data augmentation in the main process
(nnUNet_n_proc_DA=0, as the phantom pipelines train) against background workers, in one run.

Uses a data set that ``benchmarks/thin_branches.py`` has already planned and preprocessed (its seed folder), and
trains the budget trainer there with the real ``nnUNetv2_train`` into a fresh results folder per setting: the
seconds of every epoch after the first (progress.json) give ms per iteration; each setting is trained twice with
the same seed, and the per-epoch training losses of the two runs say whether it is repeatable.

    python benchmarks/bench_data_workers.py --seed-dir /tmp/thin/seed_0 [--workers 0 1 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import cpu_name

from nnunet_airway.trainers.budget_variables import (
    EPOCHS_VARIABLE,
    ITERATIONS_VARIABLE,
    SEED_VARIABLE,
    SKIP_VALIDATION_VARIABLE,
)
from nnunet_airway.trainers.progress import PROGRESS_FILE
from nnunet_airway.trainers.shims import shim_folder


def train_once(seed_dir: Path, settings: dict, trainer: str, plans: str, workers: int, epochs: int,
               iterations: int, results: Path) -> dict:
    """One nnUNetv2_train of ``trainer``; its epoch seconds and training losses from progress.json."""
    env = {**os.environ, "nnUNet_raw": settings["nnUNet_raw"], "nnUNet_preprocessed": settings["nnUNet_preprocessed"],
           "nnUNet_results": str(results), "nnUNet_n_proc_DA": str(workers), EPOCHS_VARIABLE: str(epochs),
           ITERATIONS_VARIABLE: str(iterations), SEED_VARIABLE: "0", SKIP_VALIDATION_VARIABLE: "1",
           "nnUNet_extTrainer": os.pathsep.join(p for p in (str(shim_folder()), os.environ.get("nnUNet_extTrainer"))
                                                if p)}
    command = ["nnUNetv2_train", str(settings["dataset_id"]), "3d_fullres", "0", "-tr", trainer, "-p", plans,
               "-device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    progress = next(results.rglob(PROGRESS_FILE))
    epochs_done = json.loads(progress.read_text())["epochs"]
    return {"wall_s": time.perf_counter() - start, "epoch_s": [e["seconds"] for e in epochs_done],
            "train_loss": [e["train_loss"] for e in epochs_done]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-dir", type=Path, required=True, help="a seed folder of a thin_branches.py work dir")
    parser.add_argument("--trainer", default="nnUNetTrainerAirwayBaseline_Budget")
    parser.add_argument("--plans", default="nnUNetAirwayDemoPlans")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    settings = json.loads((args.seed_dir / "state.json").read_text())["settings"]
    print(f"CPU {cpu_name()} ({os.cpu_count()} cores); {args.trainer}, patch {settings['patch_zyx']}, "
          f"{args.epochs} epochs x {args.iterations} iterations, the first epoch left out of the timing")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp:
        for repeat in range(2):  # interleaved: a busy spell of the machine falls on every setting
            for workers in args.workers:
                results = Path(tmp) / f"w{workers}_r{repeat}"
                rows.setdefault(workers, []).append(train_once(args.seed_dir, settings, args.trainer, args.plans,
                                                               workers, args.epochs, args.iterations, results))
    base = None
    print(f"{'nnUNet_n_proc_DA':>16s} {'ms/iter':>8s} {'x in-process':>12s} {'repeatable':>10s}  losses of run 1 / run 2")
    for workers, runs in rows.items():
        ms = min(1000 * statistics.mean(run["epoch_s"][1:]) / args.iterations for run in runs)
        base = base or ms
        same = runs[0]["train_loss"] == runs[1]["train_loss"]
        losses = " / ".join(",".join(f"{v:.4f}" for v in run["train_loss"]) for run in runs)
        print(f"{workers:16d} {ms:8.0f} {ms / base:12.2f} {str(same):>10s}  {losses}")


if __name__ == "__main__":
    main()
