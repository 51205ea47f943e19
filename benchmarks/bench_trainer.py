"""Training-iteration time and peak memory of the airway trainers against nnU-Net's own, and prediction time.

    python benchmarks/bench_trainer.py                       # CPU-sized defaults
    python benchmarks/bench_trainer.py --shape 160 224 224 --predict-shape 400 512 512 --features 32 64 128 256 320

Writes phantoms, runs the real nnUNetv2_plan_and_preprocess (3d_fullres) and the airway planner (``nnunet-airway
plan --preset plain``, which also writes the same plan with nnU-Net's network for nnUNetTrainer) in a temporary
folder, then measures each trainer in its own process on the same patch and batch (optionally with narrower
--features):
  * ms per training iteration, data loading included (``train_step(next(dataloader))``), after warm-up;
  * peak memory of training: CUDA max_memory_allocated, or on CPU the rise of the process's peak RSS over
    its RSS after initialisation (an approximation: allocator caching and the data loader count too);
  * prediction (nnUNetPredictor sliding window with mirroring, random weights) of one --predict-shape volume,
    FRAD vs Baseline.
Times are the fastest of --repeats interleaved runs (least disturbed on a shared machine), memory the median.
Prints ratios against the Baseline (same five-scale U-Net without FR/AD) measured in the same run.
Goals (issue 4): FRAD <= 1.15x time and <= 1.25x memory of Baseline; prediction <= 1.1x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_name, peak_rss_bytes

TRAINERS = {
    "nnUNetTrainer": "nnunetv2.training.nnUNetTrainer.nnUNetTrainer",
    "nnUNetTrainerAirwayBaseline": "nnunet_airway.trainers.variants",
    "nnUNetTrainerAirwayFRAD": "nnunet_airway.trainers.variants",
}
# --topology: the skeleton-loss trainers, each against the same trainer without the loss
TOPOLOGY_TRAINERS = {
    "nnUNetTrainerAirwayBaseline_SkelRecall": "nnUNetTrainerAirwayBaseline",
    "nnUNetTrainerAirwayBaseline_clDice": "nnUNetTrainerAirwayBaseline",
    "nnUNetTrainerAirwayFRAD_SkelRecall": "nnUNetTrainerAirwayFRAD",
    "nnUNetTrainerAirwayFRAD_clDice": "nnUNetTrainerAirwayFRAD",
}
PREDICTED = ["nnUNetTrainerAirwayBaseline", "nnUNetTrainerAirwayFRAD"]
DATASET_ID = 950
DATASET = f"Dataset{DATASET_ID}_AirwayBench"
PLANS = "nnUNetAirwayPlansBench"  # the airway planner's plan
NNUNET_PLANS = "nnUNetPlansBench"  # the same plan with nnU-Net's network, for nnUNetTrainer


def plans_for(trainer: str) -> str:
    return PLANS if trainer.startswith("nnUNetTrainerAirway") else NNUNET_PLANS


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return peak_rss_bytes() / 2**20


# ---------------------------------------------------------------- child: one trainer, one measurement
def measure(args: argparse.Namespace) -> dict:
    import importlib

    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json

    device = torch.device(args.device)
    root = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    plans = load_json(str(root / f"{plans_for(args.child)}.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(root / "dataset.json"))
    module = TRAINERS.get(args.child, "nnunet_airway.trainers.variants")
    trainer_class = getattr(importlib.import_module(module), args.child)
    trainer = trainer_class(plans, "3d_fullres", 0, dataset_json, device=device)
    trainer.initialize()
    result: dict = {"trainer": args.child}
    if args.mode == "train":
        import random

        import numpy as np

        random.seed(0)  # the same patches and augmentations for every trainer (the skeleton's cost depends on them)
        np.random.seed(0)
        torch.manual_seed(0)
        loader, _ = trainer.get_dataloaders()
        trainer.network.train()
        for _ in range(args.warmup):
            trainer.train_step(next(loader))
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rss_before = rss_mib()
        loading = 0.0
        start = time.perf_counter()
        for _ in range(args.iterations):
            fetched = time.perf_counter()
            batch = next(loader)  # nnU-Net's data loading and augmentation (the skeleton transform included)
            loading += time.perf_counter() - fetched
            trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
            result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        else:
            result["peak_mib"] = peak_rss_mib() - rss_before
        result["ms_per_iteration"] = 1000 * (time.perf_counter() - start) / args.iterations
        result["ms_loading"] = 1000 * loading / args.iterations
    else:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                    perform_everything_on_device=device.type == "cuda", device=device,
                                    verbose=False, allow_tqdm=False)
        trainer.set_deep_supervision_enabled(False)
        predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager, None,
                                        dataset_json, args.child, (0, 1, 2))
        volume = torch.randn(1, *args.predict_shape, generator=torch.Generator().manual_seed(0))
        predictor.predict_sliding_window_return_logits(torch.randn(1, *trainer.configuration_manager.patch_size))
        start = time.perf_counter()
        predictor.predict_sliding_window_return_logits(volume)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result["predict_s"] = time.perf_counter() - start
    return result


# ---------------------------------------------------------------- parent: data set, processes, table
def prepare(root: Path, args: argparse.Namespace) -> dict[str, str]:
    from nnunet_airway.phantoms.generate import generate_phantom
    from nnunet_airway.writing import write_image, write_json

    raw = root / "raw" / DATASET
    for index in range(args.cases):
        phantom = generate_phantom(seed=index, shape_zyx=tuple(args.shape))
        write_image(raw / "imagesTr" / f"phantom_{index:03d}_0000.nii.gz", phantom.ct, phantom.geometry)
        write_image(raw / "labelsTr" / f"phantom_{index:03d}.nii.gz", phantom.label, phantom.geometry)
    write_json(raw / "dataset.json", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "airway": 1},
                                      "numTraining": args.cases, "file_ending": ".nii.gz"})
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_compile": os.environ.get("nnUNet_compile", "f")}
    env.pop("nnUNet_n_proc_DA", None)  # plan_and_preprocess fails with 0
    subprocess.run(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres",
                    "-np", "1", "-npfp", "1"], env=env, check=True, capture_output=True)
    preprocessed = root / "preprocessed" / DATASET
    features = []
    if args.features:
        base, cap = args.features[0], max(args.features)
        features = ["--base-features", str(base), "--max-features", str(cap)]
    subprocess.run([sys.executable, "-m", "nnunet_airway", "plan", "-d", str(DATASET_ID), "--preset", "plain",
                    "--plans-name", PLANS, "--nnunet-plans-name", NNUNET_PLANS, *features], env=env, check=True,
                   capture_output=True)
    if args.batch_size:
        for name in (PLANS, NNUNET_PLANS):
            plans = json.loads((preprocessed / f"{name}.json").read_text())
            plans["configurations"]["3d_fullres"]["batch_size"] = args.batch_size
            write_json(preprocessed / f"{name}.json", plans)
    write_json(preprocessed / "splits_final.json", [{"train": [f"phantom_{i:03d}" for i in range(args.cases)],
                                                     "val": ["phantom_000"]}])
    return env


def run_child(env: dict[str, str], args: argparse.Namespace, trainer: str, mode: str) -> dict:
    argv = [sys.executable, __file__, "--child", trainer, "--mode", mode, "--device", args.device,
            "--iterations", str(args.iterations), "--warmup", str(args.warmup),
            "--predict-shape", *map(str, args.predict_shape)]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 96, 96], help="phantom shape (Z Y X)")
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--features", type=int, nargs="*", default=[8, 16, 32, 64, 64],
                        help="features per stage as the planner widens them (the first doubled up to the largest); "
                             "none = nnU-Net's 32-320")
    parser.add_argument("--batch-size", type=int, default=0, help="0 = the plans' batch size")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the fastest run and the median memory are reported")
    parser.add_argument("--predict-shape", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--device", default="cuda" if _cuda_available() else "cpu")
    parser.add_argument("--topology", action="store_true",
                        help="also the skeleton-loss trainers, each against the same trainer without the loss "
                             "(iteration and data-loading time; goal: at most 1.15x per iteration)")
    parser.add_argument("--no-predict", action="store_true", help="leave the prediction timing out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        env = prepare(Path(tmp), args)
        if args.device == "cpu":
            env.setdefault("nnUNet_n_proc_DA", "0")
        plans = json.loads((Path(tmp) / "preprocessed" / DATASET / f"{PLANS}.json").read_text())
        config = plans["configurations"]["3d_fullres"]
        trained = [*TRAINERS, *(TOPOLOGY_TRAINERS if args.topology else [])]
        predicted = [] if args.no_predict else PREDICTED
        runs: dict[str, list[dict]] = {name: [] for name in trained}
        predictions: dict[str, list[float]] = {name: [] for name in predicted}
        for _ in range(args.repeats):
            for name in trained:
                runs[name].append(run_child(env, args, name, "train"))
            for name in predicted:
                predictions[name].append(run_child(env, args, name, "predict")["predict_s"])

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def fastest(name: str, key: str) -> float:  # the least disturbed run on a shared machine
        return min(r[key] for r in runs[name])

    device = "GPU " + _cuda_name() if args.device == "cuda" else f"CPU {cpu_name()} ({os.cpu_count()} cores)"
    print(f"device: {device}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}")
    print(f"plans: patch {config['patch_size']}, batch {config['batch_size']}, features "
          f"{config['architecture']['arch_kwargs']['features_per_stage']}, phantoms {args.shape} x {args.cases}")
    base_ms = fastest("nnUNetTrainerAirwayBaseline", "ms_per_iteration")
    base_mem = median("nnUNetTrainerAirwayBaseline", "peak_mib")
    print(f"{'trainer':32s} {'ms/iter':>9s} {'x Baseline':>10s} {'peak MiB':>9s} {'x Baseline':>10s}")
    for name in TRAINERS:
        ms, mem = fastest(name, "ms_per_iteration"), median(name, "peak_mib")
        print(f"{name:32s} {ms:9.1f} {ms / base_ms:10.2f} {mem:9.1f} {mem / base_mem:10.2f}")
    if args.topology:
        print("skeleton losses, each against the same trainer without it (fastest run; data loading = next(loader)):")
        print(f"{'trainer':40s} {'ms/iter':>9s} {'x without':>9s} {'ms loading':>10s} {'x without':>9s}")
        for name, without in TOPOLOGY_TRAINERS.items():
            ms, load = fastest(name, "ms_per_iteration"), fastest(name, "ms_loading")
            print(f"{name:40s} {ms:9.1f} {ms / fastest(without, 'ms_per_iteration'):9.2f} {load:10.1f} "
                  f"{load / fastest(without, 'ms_loading'):9.2f}")
        for name, ms in time_topology_losses(config, args.device).items():
            print(f"{name} alone (forward + backward on the full-resolution output): {ms:.1f} ms, "
                  f"{ms / base_ms:.2f} of a Baseline iteration")
    if not predicted:
        return
    base_s = min(predictions["nnUNetTrainerAirwayBaseline"])
    print(f"prediction of {args.predict_shape} (sliding window, mirroring):")
    for name in PREDICTED:
        seconds = min(predictions[name])
        print(f"{name:32s} {seconds:9.2f} s {seconds / base_s:10.2f}")


def time_topology_losses(config: dict, device: str, repeats: int = 10) -> dict[str, float]:
    """ms per forward + backward of each skeleton loss on random logits (batch, 2, *patch) and a sparse target:
    the loss's own cost, free of the data pipeline and of the machine's noise across processes."""
    import torch

    from nnunet_airway.model.topology_losses import SkeletonRecallLoss, SoftClDiceLoss

    generator = torch.Generator().manual_seed(0)
    shape = (int(config["batch_size"]), 1, *(int(n) for n in config["patch_size"]))
    logits = torch.randn((shape[0], 2, *shape[2:]), generator=generator).to(device).requires_grad_()
    target = (torch.rand(shape, generator=generator) > 0.9).float().to(device)
    timings = {}
    for name, loss in (("Skeleton Recall", SkeletonRecallLoss()), ("clDice", SoftClDiceLoss())):
        loss(logits, target).backward()
        start = time.perf_counter()
        for _ in range(repeats):
            logits.grad = None
            loss(logits, target).backward()
        if device == "cuda":
            torch.cuda.synchronize()
        timings[name] = 1000 * (time.perf_counter() - start) / repeats
    return timings


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


if __name__ == "__main__":
    main()
