"""One command for a machine with a CUDA GPU: the CUDA tests, step time and memory, prediction, a real training.

    python benchmarks/gpu_suite.py              # on a GPU: at most --budget-s seconds (default 480)
    python benchmarks/gpu_suite.py --dry-run    # the same code paths on CPU at tiny sizes (part of the tests)

Writes ``<out>/gpu_suite_<device>.json`` and ``.md`` (out: benchmarks/results). Phases, each in its own process
with a time limit taken from what is left of the budget, in this order (a phase that would start with too
little time left is recorded as skipped, one cut short keeps what it measured):
  1. tests: ``pytest -m cuda`` on tests/trainers/test_cuda.py (compiled vs eager gradients, fp16 trainer steps);
  2. steps, eager then compiled: the trainers' ``train_step`` (nnU-Net's, or the airway base's copy; fp16 autocast and GradScaler on CUDA, batch 2)
     of nnU-Net's PlainConvUNet (nnUNetTrainer) and the Baseline, FR, AD and FR+AD trainers, all built from the
     same plans (features 32-320) at the paper's patch 64x224x304 and at 128^3: ms per step and peak memory
     (CUDA max_memory_allocated), with ratios against the plain network and the Baseline of the same run;
  3. prediction: nnUNetPredictor (sliding window, step 0.5, Gaussian, mirroring) of a 400x512x512 volume at the
     paper's patch, random weights, eager, for the plain network, Baseline and FR+AD;
  4. training: phantoms -> nnUNetv2_plan_and_preprocess -> nnunet-airway plan (plain preset) -> nnUNetv2_train
     with those plans and nnUNetTrainerAirwayFRAD cut to 2 epochs (benchmarks/suite_trainers; ``-num_gpus 2`` when two GPUs are
     present) -> nnUNetv2_predict;
  5. the real ATM'26 3d_fullres configuration: ``nnunet-airway plan`` on the ATM'26 organisers' fingerprint
     (tests/data/atm26_plans) with the plain and ResEnc M presets, then per backbone the train_step of FR+AD,
     the Baseline (same backbone, no FR/AD) and nnUNetTrainer on the same plan with nnU-Net's own network, eager
     and compiled (FR+AD), fp16 autocast as nnU-Net trains: ms per step and peak memory beside the planner's
     memory estimate.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_airway.argument_types import positive_float
from nnunet_airway.trainers.budget_variables import SKIP_VALIDATION_VARIABLE
from nnunet_airway.writing import write_bytes, write_json

ROOT = Path(__file__).resolve().parents[1]
SUITE_TRAINERS = Path(__file__).resolve().parent / "suite_trainers"
SUITE_TRAINER = "nnUNetTrainerAirwayFRAD_Suite"
CUDA_TESTS = ["tests/trainers/test_cuda.py"]
PLAIN = "nnUNetTrainer"
STEP_TRAINERS = [PLAIN, "nnUNetTrainerAirwayBaseline", "nnUNetTrainerAirwayFR", "nnUNetTrainerAirwayAD",
                 "nnUNetTrainerAirwayFRAD"]
PREDICT_TRAINERS = [PLAIN, "nnUNetTrainerAirwayBaseline", "nnUNetTrainerAirwayFRAD"]
DATASET_ID = 951
DATASET = f"Dataset{DATASET_ID}_AirwaySuite"
GOALS = {"step_time": 1.15, "step_memory": 1.25, "prediction": 1.1}  # FR+AD against the plain network
ATM26_FILES = ROOT / "tests" / "data" / "atm26_plans"
ATM26_DATASET = "Dataset926_ATM26"
ATM26_PRESETS = {"plain": ("nnUNetAirwayPlans", "nnUNetPlansATM26"),
                 "resenc-m": ("nnUNetAirwayResEncMPlans", "nnUNetResEncUNetMPlansATM26")}  # airway, nnU-Net twin
ATM26_TRAINERS = [PLAIN, "nnUNetTrainerAirwayBaseline", "nnUNetTrainerAirwayFRAD"]
ATM26_COMPILED = ["nnUNetTrainerAirwayFRAD", PLAIN]


@dataclass(frozen=True)
class Sizes:
    """What the suite runs at: the real sizes on a GPU, tiny ones for --dry-run."""

    patches: dict[str, dict]  # name -> patch, strides, features (nnU-Net plans: all stages)
    batch_size: int
    warmup: int
    iterations: int
    predict_shape: tuple[int, int, int]
    phantoms: int
    phantom_shape: tuple[int, int, int]
    train_iterations: int
    train_features: list[int] | None  # None: the planner's own features (nnU-Net's 32-320)
    compiled_trainers: list[str]
    atm26_plan_options: tuple[str, ...] = ()  # extra `nnunet-airway plan` options (the dry run's small patch)


FEATURES = [32, 64, 128, 256, 320, 320]
GPU = Sizes(
    patches={
        "64x224x304": {"patch": [64, 224, 304], "features": FEATURES,
                       "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 1]]},
        "128x128x128": {"patch": [128, 128, 128], "features": FEATURES,
                        "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5},
    },
    batch_size=2, warmup=3, iterations=10, predict_shape=(400, 512, 512),
    phantoms=3, phantom_shape=(96, 160, 160), train_iterations=50, train_features=None,
    # the goals compare these two: measured first in case the time limit cuts the compiled phase short
    compiled_trainers=[PLAIN, "nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayBaseline", "nnUNetTrainerAirwayFR",
                       "nnUNetTrainerAirwayAD"],
)
# one patch (the code path is the same for any), compiled with aot_eager (TorchDynamo and AOTAutograd without
# code generation), FR+AD only (it runs every code path of FR and AD; compiling nnU-Net's plain network is
# nnU-Net's own path, and its ratios are figures, which a dry run does not make)
DRY = Sizes(
    patches={"16x32x32": {"patch": [16, 32, 32], "features": [4, 8, 8, 8, 8],
                          "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]}},
    batch_size=2, warmup=1, iterations=1, predict_shape=(24, 48, 48),
    phantoms=3, phantom_shape=(48, 64, 64), train_iterations=2, train_features=[4, 8, 8, 8, 8, 8],
    compiled_trainers=["nnUNetTrainerAirwayFRAD"],
    # batch 2: with features this narrow the estimate would allow thousands (capped at 5 % of ATM'26's voxels)
    atm26_plan_options=("--patch-size", "64", "96", "64", "--base-features", "4", "--max-features", "8",
                        "--batch-size", "2"),
)


# ---------------------------------------------------------------- children (one process per measurement)
def trainer_class(name: str):
    import importlib

    module = "nnunetv2.training.nnUNetTrainer.nnUNetTrainer" if name == PLAIN else "nnunet_airway.trainers.variants"
    return getattr(importlib.import_module(module), name)


def free_memory() -> None:
    import torch

    gc.collect()
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_train_steps(name: str, plans: dict, args: argparse.Namespace, sizes: Sizes) -> dict:
    """Build trainer ``name`` from ``plans`` (compiled unless args.mode is eager), step it on a synthetic batch
    sizes.warmup + sizes.iterations times; ms per step, peak CUDA MiB (None on CPU), warm-up s, last loss."""
    import torch

    from nnunet_airway.trainers.standalone import build_trainer, set_seed, synthetic_batch

    device = torch.device(args.device)
    set_seed(0)
    backend = None if args.mode == "eager" else ("aot_eager" if args.dry_run else "inductor")
    trainer = build_trainer(trainer_class(name), plans, device, compile_backend=backend)
    batch = synthetic_batch(trainer, torch.Generator().manual_seed(0))
    batch = {"data": batch["data"].to(device), "target": _to(batch["target"], device)}
    trainer.network.train()
    start = time.perf_counter()
    for _ in range(sizes.warmup):
        loss = float(trainer.train_step(batch)["loss"])
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(sizes.iterations):
        loss = float(trainer.train_step(batch)["loss"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = 1000 * (time.perf_counter() - start) / sizes.iterations
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    del trainer, batch
    free_memory()
    return {"ms_per_step": ms, "peak_mib": peak, "warmup_s": warmup_s, "loss": loss}


def child_steps(args: argparse.Namespace, sizes: Sizes) -> None:
    """One line of JSON per trainer appended to args.result: ms per train_step and peak memory."""
    from nnunet_airway.trainers.standalone import plans_for

    # nnU-Net also compiles its Dice loss when it compiles the network (nnUNetTrainer._build_loss)
    os.environ["nnUNet_compile"] = "f" if args.mode == "eager" else "t"
    spec = sizes.patches[args.patch]
    plans = plans_for(spec["patch"], spec["features"], spec["strides"], sizes.batch_size)
    for name in args.trainers:
        timing = time_train_steps(name, plans, args, sizes)
        _append(args.result, {"trainer": name, "patch": args.patch, "mode": args.mode, **timing})


def child_atm26(args: argparse.Namespace, sizes: Sizes) -> None:
    """One line of JSON per trainer: train_step ms and peak memory on the planned ATM'26 3d_fullres plans of one
    preset (args.patch), nnUNetTrainer on the same plan with nnU-Net's network, and the planner's estimate."""
    os.environ["nnUNet_compile"] = "f" if args.mode == "eager" else "t"
    folder = Path(os.environ["nnUNet_preprocessed"]) / ATM26_DATASET
    airway_name, nnunet_name = ATM26_PRESETS[args.patch]
    for name in args.trainers:
        plans = json.loads((folder / f"{nnunet_name if name == PLAIN else airway_name}.json").read_text())
        config = plans["configurations"]["3d_fullres"]
        timing = time_train_steps(name, plans, args, sizes)
        _append(args.result, {
            "trainer": name, "patch": f"ATM'26 {args.patch}", "mode": args.mode,
            "network": config["architecture"]["network_class_name"].split(".")[-1],
            "plan_patch": config["patch_size"], "batch_size": config["batch_size"],
            "estimate_gib": plans["airway_planner"]["estimates"]["3d_fullres"]["memory_estimate_gib"], **timing})


def child_predict(args: argparse.Namespace, sizes: Sizes) -> None:
    """One line of JSON per trainer: seconds to predict a sizes.predict_shape volume (after a warm-up patch)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_airway.trainers.standalone import DATASET_JSON, build_trainer, plans_for, set_seed

    device = torch.device(args.device)
    os.environ["nnUNet_compile"] = "f"  # eager prediction, as nnUNetv2_predict without nnUNet_compile=t
    spec = sizes.patches[args.patch]
    plans = plans_for(spec["patch"], spec["features"], spec["strides"], sizes.batch_size)
    volume = torch.randn(1, *sizes.predict_shape, generator=torch.Generator().manual_seed(0))
    for name in args.trainers:
        set_seed(0)
        trainer = build_trainer(trainer_class(name), plans, device)
        trainer.set_deep_supervision_enabled(False)
        trainer.network.eval()
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, allow_tqdm=False)
        predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                        DATASET_JSON, name, (0, 1, 2))
        predictor.predict_sliding_window_return_logits(torch.randn(1, *spec["patch"]))
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        logits = predictor.predict_sliding_window_return_logits(volume)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        _append(args.result, {"trainer": name, "patch": args.patch, "shape": list(sizes.predict_shape),
                              "seconds": seconds, "peak_mib": peak, "finite": bool(torch.isfinite(logits).all())})
        del trainer, predictor, logits
        free_memory()


def _to(target, device):
    return [t.to(device) for t in target] if isinstance(target, list) else target.to(device)


def _append(path: str, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------- parent: phases under one time budget
class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_limited(argv: list[str], env: dict[str, str], limit_s: float, log: Path) -> dict:
    """Run argv in its own process group, killed with all its children after limit_s seconds."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=max(1.0, limit_s))
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
            timed_out = True
    tail = log.read_text(errors="replace")[-3000:]
    return {"argv": [Path(argv[0]).name, *argv[1:]], "returncode": returncode, "timed_out": timed_out,
            "seconds": round(time.perf_counter() - start, 1), "ok": returncode == 0 and not timed_out,
            "log_tail": tail if returncode != 0 or timed_out else ""}


def base_env(args: argparse.Namespace, work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("nnUNet_")}
    env.update({
        "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"),
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), str(SUITE_TRAINERS), env.get("PYTHONPATH", "")] if p),
    })
    if "nnUNet_compile" in os.environ:
        env["nnUNet_compile"] = os.environ["nnUNet_compile"]
    if args.dry_run:
        env.update({"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"), "nnUNet_n_proc_DA": "0",
                    "nnUNet_def_n_proc": "1"})
    return env


def phase_tests(args, env, budget: Budget, work: Path) -> dict:
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *CUDA_TESTS]
    result = run_limited(argv, env, min(args.phase_cap_s, budget.left()), work / "tests.log")
    summary = re.findall(r"^=*\s*(\d+ \w+.*?) in [\d.]+s", _tail(work / "tests.log"), re.MULTILINE)
    result["summary"] = summary[-1] if summary else ""
    return result


def phase_children(kind: str, args, env, budget: Budget, work: Path, patch: str, mode: str,
                   trainers: list[str], limit_s: float) -> tuple[dict, list[dict]]:
    result_file = work / f"{kind}_{patch}_{mode}.jsonl"
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--patch", patch, "--mode", mode,
            "--device", args.device, "--result", str(result_file), "--trainers", *trainers]
    if args.dry_run:
        argv.append("--dry-run")
    run = run_limited(argv, env, min(limit_s, budget.left()), work / f"{kind}_{patch}_{mode}.log")
    records = [json.loads(line) for line in result_file.read_text().splitlines()] if result_file.exists() else []
    run.update({"kind": kind, "patch": patch, "mode": mode, "measured": len(records), "expected": len(trainers)})
    return run, records


def phase_train(args, sizes: Sizes, env, budget: Budget, work: Path) -> dict:
    """Phantoms -> plan and preprocess -> 2-epoch nnUNetv2_train -> nnUNetv2_predict; one record of each step."""
    import torch

    from nnunet_airway.phantoms.generate import generate_phantom
    from nnunet_airway.writing import write_image

    steps: list[dict] = []
    start = time.perf_counter()
    raw = work / "raw" / DATASET
    cases = [f"phantom_{index:03d}" for index in range(sizes.phantoms)]
    for index, case in enumerate(cases):
        phantom = generate_phantom(seed=index, shape_zyx=sizes.phantom_shape)
        write_image(raw / "imagesTr" / f"{case}_0000.nii.gz", phantom.ct, phantom.geometry)
        write_image(raw / "labelsTr" / f"{case}.nii.gz", phantom.label, phantom.geometry)
    phantom = generate_phantom(seed=100, shape_zyx=sizes.phantom_shape)
    write_image(raw / "imagesTs" / "phantom_100_0000.nii.gz", phantom.ct, phantom.geometry)
    write_json(raw / "dataset.json", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "airway": 1},
                                      "numTraining": len(cases), "file_ending": ".nii.gz"})
    steps.append({"step": "phantoms", "seconds": round(time.perf_counter() - start, 1), "ok": True})
    processes = "1" if args.dry_run else str(min(8, os.cpu_count() or 1))
    plan_env = {k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}  # plan_and_preprocess fails with 0
    steps.append(run_limited(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres",
                              "-np", processes, "-npfp", processes], plan_env, budget.left(), work / "plan.log"))
    preprocessed = work / "preprocessed" / DATASET
    if not steps[-1]["ok"]:
        return {"ok": False, "steps": steps}
    plans_name = "nnUNetAirwayPlansSuite"  # the airway planner's plain preset on nnU-Net's preprocessed data
    features = [] if sizes.train_features is None else [  # dry run only: narrow stages
        "--base-features", str(sizes.train_features[0]), "--max-features", str(max(sizes.train_features))]
    steps.append(run_limited([sys.executable, "-m", "nnunet_airway", "plan", "-d", str(DATASET_ID), "--preset",
                              "plain", "--plans-name", plans_name, *features], plan_env, budget.left(),
                             work / "plan_airway.log"))
    if not steps[-1]["ok"]:
        return {"ok": False, "steps": steps}
    plans = json.loads((preprocessed / f"{plans_name}.json").read_text())
    write_json(preprocessed / "splits_final.json", [{"train": cases[:-1], "val": cases[-1:]}])
    config = plans["configurations"]["3d_fullres"]
    gpus = torch.cuda.device_count() if args.device == "cuda" else 0
    train_env = {**env, "nnUNet_extTrainer": str(SUITE_TRAINERS / "ext"),
                 "AIRWAY_SUITE_ITERATIONS": str(sizes.train_iterations)}
    if args.dry_run:  # nnU-Net's validation is its own code path, tested elsewhere; on a CPU it costs 17-20 s
        train_env[SKIP_VALIDATION_VARIABLE] = "1"
    train = ["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", SUITE_TRAINER, "-p", plans_name,
             "-device", args.device]
    if gpus >= 2:
        train += ["-num_gpus", "2"]
    steps.append(run_limited(train, train_env, budget.left(), work / "train.log"))
    if steps[-1]["ok"]:
        log = _tail(work / "train.log", 20000)
        dice = [[float(v) for v in re.sub(r"np\.float\d+\(|\)", "", found).split(",") if v.strip()]
                for found in re.findall(r"Pseudo dice \[([^\]]*)\]", log)]
        epochs = re.findall(r"Epoch time: ([\d.]+) s", log)
        steps[-1].update({"pseudo_dice": dice, "epoch_s": [float(e) for e in epochs],
                          "compiled": "Using torch.compile" in log})
        out = work / "predicted"
        predict = ["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-d", str(DATASET_ID),
                   "-c", "3d_fullres", "-f", "0", "-tr", SUITE_TRAINER, "-p", plans_name, "-device", args.device]
        if args.dry_run:
            predict += ["-npp", "0", "-nps", "0"]
        steps.append(run_limited(predict, train_env, budget.left(), work / "predict.log"))
        steps[-1]["written"] = sorted(p.name for p in out.glob("*.nii.gz")) if out.exists() else []
        steps[-1]["ok"] = steps[-1]["ok"] and bool(steps[-1]["written"])
    return {"ok": all(s["ok"] for s in steps), "gpus_used": 2 if gpus >= 2 else (1 if gpus else 0),
            "plans": plans_name, "patch": config["patch_size"], "batch_size": config["batch_size"],
            "features": config["architecture"]["arch_kwargs"]["features_per_stage"],
            "iterations_per_epoch": sizes.train_iterations, "steps": steps}


def phase_atm26_plans(args, sizes: Sizes, env, budget: Budget, work: Path) -> dict:
    """The ATM'26 fingerprint in nnU-Net's folders (dataset.json and one dummy image, which the planner opens to
    choose its reader), then ``nnunet-airway plan`` for each preset, with nnU-Net's twin for nnUNetTrainer."""
    import numpy as np
    import SimpleITK as sitk

    raw = work / "raw" / ATM26_DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    (raw / "dataset.json").write_bytes((ATM26_FILES / "dataset.json").read_bytes())
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.int16)), str(raw / "imagesTr" / "ATM_001_0000.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8)), str(raw / "labelsTr" / "ATM_001.nii.gz"))
    preprocessed = work / "preprocessed" / ATM26_DATASET
    preprocessed.mkdir(parents=True, exist_ok=True)
    (preprocessed / "dataset_fingerprint.json").write_bytes((ATM26_FILES / "dataset_fingerprint.json").read_bytes())
    steps = []
    for preset, (airway_name, nnunet_name) in ATM26_PRESETS.items():
        argv = [sys.executable, "-m", "nnunet_airway", "plan", "-d", ATM26_DATASET, "--preset", preset,
                "--plans-name", airway_name, "--nnunet-plans-name", nnunet_name, *sizes.atm26_plan_options]
        steps.append(run_limited(argv, env, min(args.phase_cap_s, budget.left()), work / f"plan_atm26_{preset}.log"))
    plans = {}
    for preset, (airway_name, _) in ATM26_PRESETS.items():
        path = preprocessed / f"{airway_name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            fullres = data["configurations"]["3d_fullres"]
            plans[preset] = {"patch": fullres["patch_size"], "batch_size": fullres["batch_size"],
                             "features": fullres["architecture"]["arch_kwargs"]["features_per_stage"],
                             "estimate": data["airway_planner"]["estimates"]["3d_fullres"]}
    return {"ok": all(step["ok"] for step in steps), "steps": steps, "plans": plans}


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


def device_description(device: str) -> tuple[str, str]:
    """(slug for the file name, description)."""
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        count = torch.cuda.device_count()
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), f"{count} x {name}"
    cpu = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "cpu", f"CPU {cpu} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (the code paths, not figures)")
    parser.add_argument("--budget-s", type=positive_float("s"), default=None, help="total seconds (default 480; dry run 175)")
    parser.add_argument("--phase-cap-s", type=positive_float("s"), default=150, help="most seconds one measurement process runs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["steps", "predict", "atm26"], help=argparse.SUPPRESS)
    parser.add_argument("--patch", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="eager", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--trainers", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = DRY if args.dry_run else GPU
    if args.child:
        {"steps": child_steps, "predict": child_predict, "atm26": child_atm26}[args.child](args, sizes)
        return

    import torch

    if args.device is None:
        args.device = "cpu" if args.dry_run else "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a machine with a GPU, or use --dry-run to check the code paths on CPU")
    budget = Budget(args.budget_s if args.budget_s is not None else (240 if args.dry_run else 600))
    slug, description = device_description(args.device)
    if args.dry_run:
        slug = "dry-run"
    started = time.perf_counter()
    report: dict = {"device": description, "dry_run": args.dry_run, "torch": torch.__version__,
                    "nnunetv2": _version("nnunetv2"), "python": platform.python_version(),
                    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "budget_s": round(budget.left()), "goals_fr_ad_vs_plain": GOALS, "sizes": sizes.__dict__}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        work = Path(tmp)
        env = base_env(args, work)
        report["tests"] = phase_tests(args, env, budget, work)
        report["atm26_plans"] = phase_atm26_plans(args, sizes, env, budget, work)
        runs, steps, predictions, atm26 = [], [], [], []
        plan = [("steps", patch, "eager", STEP_TRAINERS) for patch in sizes.patches]
        plan += [("atm26", preset, "eager", ATM26_TRAINERS) for preset in ATM26_PRESETS]
        plan.append(("predict", next(iter(sizes.patches)), "eager", PREDICT_TRAINERS))
        compiled = [("steps", patch, "compiled", sizes.compiled_trainers) for patch in sizes.patches]
        # the dry run's compiled steps above take the same code path (time_train_steps) as these
        compiled += [("atm26", preset, "compiled", ATM26_COMPILED) for preset in ATM26_PRESETS
                     if not args.dry_run]
        plan += compiled
        for index, (kind, patch, mode, trainers) in enumerate(plan):
            if index == len(plan) - len(compiled):  # the training before the compiled steps
                report["train"] = phase_train(args, sizes, env, budget, work)
            reserve = 0.0 if args.dry_run or "train" in report else 90.0  # keep time for the training
            if budget.left() - reserve < 20:
                runs.append({"kind": kind, "patch": patch, "mode": mode, "ok": False, "skipped": "time budget"})
                continue
            run, records = phase_children(kind, args, env, budget, work, patch, mode, trainers,
                                          min(args.phase_cap_s, budget.left() - reserve))
            runs.append(run)
            {"steps": steps, "predict": predictions, "atm26": atm26}[kind].extend(records)
        report.update({"runs": runs, "steps": add_ratios(steps, "ms_per_step", "peak_mib"),
                       "predictions": add_ratios(predictions, "seconds", "peak_mib"),
                       "atm26": add_ratios(atm26, "ms_per_step", "peak_mib")})
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["ok"] = bool(report["tests"]["ok"] and report.get("train", {}).get("ok") and report["atm26_plans"]["ok"]
                        and all(r["ok"] for r in runs))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu_suite_{slug}"
    write_json(stem.with_suffix(".json"), report)  # atomic: a full disk leaves the previous report whole
    write_bytes(stem.with_suffix(".md"), markdown(report).encode())
    print(markdown(report))
    print(f"wrote {stem}.json and {stem}.md in {report['wall_s']:.0f} s")
    sys.exit(0 if report["ok"] else 1)


def add_ratios(records: list[dict], time_key: str, memory_key: str) -> list[dict]:
    """Ratios against the plain network and the Baseline of the same patch and mode."""
    by_key = {(r["patch"], r.get("mode", "eager"), r["trainer"]): r for r in records}
    for record in records:
        for label, reference in (("plain", PLAIN), ("baseline", "nnUNetTrainerAirwayBaseline")):
            other = by_key.get((record["patch"], record.get("mode", "eager"), reference))
            for key in (time_key, memory_key):
                if other and record.get(key) is not None and other.get(key):
                    record[f"{key}_x_{label}"] = round(record[key] / other[key], 3)
    return records


def markdown(report: dict) -> str:
    def cell(value, digits=1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [f"# GPU suite{' (dry run: code paths only, not figures)' if report['dry_run'] else ''}", "",
             f"{report['device']}; torch {report['torch']}, nnunetv2 {report['nnunetv2']}; {report['date']}; "
             f"{report['wall_s']:.0f} s of a {report['budget_s']} s budget; all ok: {report['ok']}", "",
             f"CUDA tests: {report['tests'].get('summary') or report['tests']['returncode']} "
             f"({report['tests']['seconds']} s)", "",
             "## Training step (nnU-Net's train_step, fp16 autocast on CUDA, batch "
             f"{report['sizes']['batch_size']})", "",
             "| patch | mode | trainer | ms/step | x plain | x Baseline | peak MiB | x plain | x Baseline |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["steps"]:
        lines.append(f"| {r['patch']} | {r['mode']} | {r['trainer']} | {cell(r['ms_per_step'])} | "
                     f"{cell(r.get('ms_per_step_x_plain'), 2)} | {cell(r.get('ms_per_step_x_baseline'), 2)} | "
                     f"{cell(r['peak_mib'], 0)} | {cell(r.get('peak_mib_x_plain'), 2)} | "
                     f"{cell(r.get('peak_mib_x_baseline'), 2)} |")
    lines += ["", f"## Prediction of a {report['sizes']['predict_shape']} volume (sliding window, mirroring)", "",
              "| patch | trainer | s | x plain | x Baseline | peak MiB |", "|---|---|---:|---:|---:|---:|"]
    for r in report["predictions"]:
        lines.append(f"| {r['patch']} | {r['trainer']} | {cell(r['seconds'], 2)} | {cell(r.get('seconds_x_plain'), 2)}"
                     f" | {cell(r.get('seconds_x_baseline'), 2)} | {cell(r['peak_mib'], 0)} |")
    lines += ["", "## The real ATM'26 3d_fullres configuration (nnunet-airway plan on the organisers' fingerprint)",
              "", "Per backbone: FR+AD, the Baseline on the same backbone and plans, and nnUNetTrainer on the same "
              "patch and batch with nnU-Net's own network; the planner's estimate beside the measured peak.", "",
              "| preset | mode | trainer | network | patch | batch | ms/step | x plain | x Baseline | peak MiB | "
              "x plain | x Baseline | estimate GiB |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report.get("atm26", []):
        lines.append(f"| {r['patch']} | {r['mode']} | {r['trainer']} | {r['network']} | "
                     f"{'x'.join(map(str, r['plan_patch']))} | {r['batch_size']} | {cell(r['ms_per_step'])} | "
                     f"{cell(r.get('ms_per_step_x_plain'), 2)} | {cell(r.get('ms_per_step_x_baseline'), 2)} | "
                     f"{cell(r['peak_mib'], 0)} | {cell(r.get('peak_mib_x_plain'), 2)} | "
                     f"{cell(r.get('peak_mib_x_baseline'), 2)} | {cell(r['estimate_gib'], 2)} |")
    planned = report.get("atm26_plans", {})
    lines.append("")
    lines.append(f"planning ok: {planned.get('ok')}; " + "; ".join(
        f"{preset}: patch {v['patch']}, batch {v['batch_size']}, features {v['features']}, estimate "
        f"{v['estimate']['memory_estimate_gib']} GiB" for preset, v in planned.get("plans", {}).items()))
    train = report.get("train", {"ok": False, "steps": []})
    lines += ["", f"## nnUNetv2_train ({SUITE_TRAINER}: nnUNetTrainerAirwayFRAD, 2 epochs) and nnUNetv2_predict", "",
              f"ok: {train['ok']}; plans {train.get('plans')}, patch {train.get('patch')}, batch "
              f"{train.get('batch_size')}, features {train.get('features')}, GPUs {train.get('gpus_used')}", ""]
    for step in train["steps"]:
        name = step.get("step") or " ".join(step["argv"][:2])
        extra = {k: step[k] for k in ("pseudo_dice", "epoch_s", "compiled", "written") if k in step}
        lines.append(f"- {name}: ok {step['ok']}, {step['seconds']} s {json.dumps(extra) if extra else ''}")
    lines += ["", "## Runs", ""]
    for run in report["runs"]:
        lines.append(f"- {run['kind']} {run['patch']} {run['mode']}: ok {run['ok']}, "
                     + (f"skipped ({run['skipped']})" if "skipped" in run else
                        f"{run['measured']}/{run['expected']} measured in {run['seconds']} s"
                        + (" (time limit)" if run["timed_out"] else "")))
    return "\n".join(lines) + "\n"


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
