"""Do feature recalibration and attention distillation find more thin branches? The paper's Table 2 on phantoms.

Per seed: a phantom data set (its own phantoms), the real nnUNetv2_plan_and_preprocess, then Baseline, FR, AD
and FR+AD trained with the same seed and the same epoch budget (nnUNetTrainerAirway*_Budget), predicted on
the held-out phantoms and scored with the paper protocol. Writes, into --out:
  thin_branches.md    mean +- std of BD, TD, TPR, FPR, DSC per trainer (Table 2 layout) and BD per generation
  thin_branches.json  every number, per seed and case, with the settings and the machine
  thin_branches.png   BD per airway generation, one line per trainer
The work dirs are resumable (rerun the same command after an interruption).

    python benchmarks/thin_branches.py --workdir /tmp/thin --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import cpu_name

from nnunet_airway.demo.pipeline import DemoSettings, PhantomExperiment, resolve_device
from nnunet_airway.image_io import write_bytes, write_json

TRAINERS = {
    "Baseline": "nnUNetTrainerAirwayBaseline_Budget",
    "Baseline + FR": "nnUNetTrainerAirwayFR_Budget",
    "Baseline + AD": "nnUNetTrainerAirwayAD_Budget",
    "Baseline + FR + AD": "nnUNetTrainerAirwayFRAD_Budget",
}
COLUMNS = ("BD", "TD", "TPR", "FPR", "DSC")


def run_seed(args: argparse.Namespace, seed: int, device: str) -> dict[str, dict]:
    """Train, predict and evaluate every trainer on the phantom data set of ``seed``; per trainer its cases."""
    settings = DemoSettings(cases=args.train_cases, test_cases=args.test_cases, seed=seed,
                            shape_zyx=tuple(args.shape), dataset_id=args.dataset_id + seed,
                            dataset_name=f"AirwayThinBranches{seed}", features=tuple(args.features),
                            patch_zyx=tuple(args.patch))
    budget = {"NNUNET_AIRWAY_EPOCHS": str(args.epochs),
              "NNUNET_AIRWAY_ITERATIONS_PER_EPOCH": str(args.iterations_per_epoch)}
    experiment = PhantomExperiment(args.workdir / f"seed_{seed}", settings, device, tuple(TRAINERS.values()), budget)
    state = experiment.run()
    results = {}
    for name, trainer in TRAINERS.items():
        summary = json.loads(Path(state["stages"][f"evaluate {trainer}"]["result"]["summary"]).read_text())
        results[name] = {"cases": summary["cases"],
                         "train_seconds": state["stages"][f"train {trainer}"]["result"].get("seconds")}
    return results


def pooled(per_seed: dict[int, dict[str, dict]], method: str, metric: str) -> list[float]:
    return [case[metric] for seed in per_seed.values() for case in seed[method]["cases"].values()
            if case.get(metric) is not None]


def seed_means(per_seed: dict[int, dict[str, dict]], method: str, metric: str) -> list[float]:
    return [float(np.mean([c[metric] for c in seed[method]["cases"].values() if c.get(metric) is not None]))
            for seed in per_seed.values()]


def generation_means(per_seed: dict[int, dict[str, dict]], method: str) -> dict[int, float]:
    values: dict[int, list[float]] = {}
    for seed in per_seed.values():
        for case in seed[method]["cases"].values():
            for generation, value in case["BD_by_generation"].items():
                if value is not None:
                    values.setdefault(int(generation), []).append(value)
    return {g: float(np.mean(v)) for g, v in sorted(values.items())}


def markdown_table(per_seed: dict[int, dict[str, dict]], header: str) -> str:
    lines = [header, "", "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method in TRAINERS:
        cells = []
        for metric in COLUMNS:
            values = pooled(per_seed, method, metric)
            digits = 3 if metric == "FPR" else 1
            cells.append(f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}" if values else "n/a")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    if len(per_seed) > 1:
        lines += ["", "Seed-to-seed spread of the per-seed means (mean ± std over seeds):", "",
                  "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for method in TRAINERS:
            cells = []
            for metric in COLUMNS:
                values = seed_means(per_seed, method, metric)
                digits = 3 if metric == "FPR" else 1
                cells.append(f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    generations = sorted({g for m in TRAINERS for g in generation_means(per_seed, m)})
    lines += ["", "BD (%) per airway generation (trachea = 0; paper protocol scores generations >= 1):", "",
              "| Method | " + " | ".join(f"gen {g}" for g in generations) + " |",
              "|---" * (len(generations) + 1) + "|"]
    for method in TRAINERS:
        means = generation_means(per_seed, method)
        lines.append(f"| {method} | " + " | ".join(f"{means[g]:.1f}" if g in means else "n/a"
                                                  for g in generations) + " |")
    return "\n".join(lines) + "\n"


def figure(per_seed: dict[int, dict[str, dict]], title: str) -> bytes:
    """BD per airway generation, one line per trainer, as PNG bytes."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for method in TRAINERS:
        means = generation_means(per_seed, method)
        ax.plot(list(means), list(means.values()), marker="o", label=method)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("airway generation")
    ax.set_ylabel("branches detected, BD (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("thin_branches_work"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-cases", type=int, default=12)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=[80, 112, 112], metavar=("Z", "Y", "X"))
    parser.add_argument("--features", type=int, nargs=5, default=[8, 16, 32, 64, 64])
    parser.add_argument("--patch", type=int, nargs=3, default=[48, 64, 64], metavar=("Z", "Y", "X"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations-per-epoch", type=int, default=20)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dataset-id", type=int, default=960, help="first nnU-Net data set id (one per seed)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    start = time.perf_counter()
    per_seed = {seed: run_seed(args, seed, device) for seed in args.seeds}
    minutes = (time.perf_counter() - start) / 60
    header = (f"Thin-branch benchmark on phantoms ({device}: {cpu_name() if device == 'cpu' else 'CUDA'}), paper "
              f"protocol, mean ± std over {sum(len(s['Baseline']['cases']) for s in per_seed.values())} held-out "
              f"cases from {len(per_seed)} seed(s). Settings: {args.train_cases} training / {args.test_cases} test "
              f"phantoms of {args.shape[0]}x{args.shape[1]}x{args.shape[2]} voxels per seed; network features "
              f"{args.features}, patch {args.patch}; {args.epochs} epochs x {args.iterations_per_epoch} iterations "
              f"per trainer, same seed; wall time {minutes:.0f} min.")
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes(args.out / "thin_branches.md", markdown_table(per_seed, header).encode())
    write_json(args.out / "thin_branches.json", {"header": header, "settings": {k: str(v) for k, v in
                                                  vars(args).items()}, "per_seed": per_seed})
    write_bytes(args.out / "thin_branches.png", figure(per_seed, f"BD per generation, {device}, "
                                                     f"{len(per_seed)} seed(s)"))
    print(markdown_table(per_seed, header))


if __name__ == "__main__":
    main()
