"""Table 2 past the first 100 iterations: one training per row and seed, scored at several points of the run.

The thin-branch benchmark's pipeline (benchmarks/thin_branches.py: the same phantom crops per seed, the real
nnUNetv2_plan_and_preprocess, nnunet-airway plan, nnUNetv2_train, nnUNetv2_predict) with each row trained once
to the longest point; the budget trainers keep the weights after every point (NNUNET_AIRWAY_KEEP_CHECKPOINTS,
``checkpoint_iter_<N>.pth``), and each is predicted (``nnUNetv2_predict -chk``) and scored on the held-out
crops. nnU-Net's poly schedule runs over the whole run, so the weights at 100 iterations of a 1000-iteration
run are not those of a 100-iteration run (a higher learning rate throughout): compare points within this file.
Writes, into --out:
  learning_curves.md    per scored point: mean ± std of BD, TD, TPR, FPR, DSC per row, BD per absolute
                        generation, paired per-case differences (95% bootstrap intervals) of every row against
                        Baseline and nnU-Net default; and what is still missing
  learning_curves.json  every number, per seed, row, point and case, with the settings and the machine
  learning_curves.png   BD, TD, DSC and BD of generations 7, 8 and 9+ against iterations, mean over seeds with
                        the seed-to-seed spread
Resumable: rerun the same command; finished stages are kept and a training resumes from its latest
checkpoint. ``--report`` writes the files from the stages finished so far without running anything.

    python benchmarks/learning_curves.py --workdir /tmp/curves --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import thin_branches as thin
from common import cpu_name, png_bytes

from nnunet_airway.argument_types import int_at_least
from nnunet_airway.demo.pipeline import DATA_STAGES, DemoSettings, PhantomExperiment, resolve_device
from nnunet_airway.demo.stages import Stage
from nnunet_airway.evaluation.comparison import bd_by_generation, mean_std, paired_differences
from nnunet_airway.trainers.budget_variables import EPOCHS_VARIABLE, KEEP_CHECKPOINTS_VARIABLE
from nnunet_airway.writing import write_bytes, write_json

DEFAULT_ROWS = ("nnunet", "baseline", "fr", "frad")
DEFAULT_POINTS = (100, 300, 1000)
COLUMNS = thin.COLUMNS
REFERENCES = thin.REFERENCES
# the generations drawn one by one in the figure (the deepest panel pools this one and deeper)
DEEP_GENERATIONS = (7, 8, 9)
# the committed thin-branch crops (benchmarks/results/topology_losses): 0.7 mm lobe crops, 8 + 3 per seed
CROP_DEFAULTS: dict[str, Any] = {"train_cases": 8, "test_cases": 3, "shape": [96, 128, 128], "crop": "lobe",
                                 "spacing": [0.7, 0.7, 0.7]}


def checkpoint_file(iterations: int) -> str:
    return f"checkpoint_iter_{iterations}.pth"


class CurveExperiment(PhantomExperiment):
    """A phantom experiment whose trainers each train once to ``points[-1]`` iterations and are predicted and
    scored from the checkpoint kept at every point (ledger stages ``predict <trainer> @<N>``)."""

    def __init__(self, *args, points: tuple[int, ...], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.points = points

    def point_prediction_dir(self, trainer: str, iterations: int) -> Path:
        return self.prediction_dir(trainer) / f"iter_{iterations}"

    def point_evaluation_dir(self, trainer: str, iterations: int) -> Path:
        return self.evaluation_dir(trainer) / f"iter_{iterations}"

    def stage_name(self, kind: str, trainer: str) -> str:
        return f"{kind} {trainer}"  # by trainer even with one row, so rows added later keep the names

    def point_stage(self, kind: str, trainer: str, iterations: int) -> str:
        return f"{kind} {trainer} @{iterations}"

    def stages(self) -> list[Stage]:
        kept = {*DATA_STAGES, *(self.stage_name("train", trainer) for trainer in self.trainers)}
        stages = []
        for stage in super().stages():
            if stage.name not in kept:
                continue
            stages.append(stage)
            trainer = stage.name.removeprefix("train ") if stage.name.startswith("train ") else None
            if trainer is None:
                continue
            for n in self.points:
                stages += [
                    Stage(self.point_stage("predict", trainer, n), f"nnUNetv2_predict -tr {trainer} -chk "
                          f"{checkpoint_file(n)} on the held-out phantoms",
                          partial(self.predict, trainer, checkpoint_file(n), self.point_prediction_dir(trainer, n))),
                    Stage(self.point_stage("evaluate", trainer, n), f"airway tree metrics after {n} iterations",
                          partial(self.evaluate, trainer, self.point_prediction_dir(trainer, n),
                                  self.point_evaluation_dir(trainer, n), pictures=False)),
                ]
        return stages


def experiment(args: argparse.Namespace, seed: int, device: str) -> CurveExperiment:
    settings = DemoSettings(cases=args.train_cases, test_cases=args.test_cases, seed=seed,
                            iterations_per_epoch=args.iterations_per_epoch, shape_zyx=tuple(args.shape),
                            dataset_id=args.dataset_id + seed, dataset_name=f"AirwayThinBranches{seed}",
                            features=tuple(args.features), patch_zyx=tuple(args.patch))
    budget = {EPOCHS_VARIABLE: str(args.points[-1] // args.iterations_per_epoch),
              KEEP_CHECKPOINTS_VARIABLE: ",".join(map(str, args.points))}
    trainers = tuple(dict.fromkeys(thin.ALL_ROWS[key].trainer for key in args.rows))  # a seed's rows: one work dir
    return CurveExperiment(args.workdir / f"seed_{seed}", settings, device, trainers, budget,
                           phantom_options=args.phantom_options, attention_maps=False, points=tuple(args.points))


def collect(args: argparse.Namespace, seed: int, device: str) -> dict[str, dict[int, dict]]:
    """Per row label, per point: the scored cases (keyed ``seed<seed>/<case>``) where that point's evaluation
    is done (read from the work dir's ledger; nothing runs)."""
    found: dict[str, dict[int, dict]] = {}
    chosen = experiment(args, seed, device)
    state_file = chosen.workdir / "state.json"
    stages = json.loads(state_file.read_text())["stages"] if state_file.exists() else {}
    for key in args.rows:
        row = thin.ALL_ROWS[key]
        found[row.label] = {}
        for n in args.points:
            entry = stages.get(chosen.point_stage("evaluate", row.trainer, n), {})
            if not entry.get("done"):
                continue
            summary = json.loads(Path(entry["result"]["summary"]).read_text())
            found[row.label][n] = {f"seed{seed}/{case}": metrics for case, metrics in summary["cases"].items()}
        train = stages.get(chosen.stage_name("train", row.trainer), {})
        found[row.label]["train_seconds"] = train.get("seconds") if train.get("done") else None
    return found


def deep_generation_bd(case: dict, generation: int, pooled: bool) -> float | None:
    """A case's BD (%) of one absolute generation, or with ``pooled`` the mean of the BD of that generation and
    every deeper one; None where the case has none of them."""
    by_generation = thin.generation_cases({"case": case})["case"]["BD_by_generation"]
    values = [v for g, v in by_generation.items() if v is not None and (int(g) >= generation if pooled
                                                                         else int(g) == generation)]
    return float(np.mean(values)) if values else None


def point_metrics(case: dict) -> dict[str, float | None]:
    """The table's columns and the deep-generation BD (``BD gen 7``, ``BD gen 8``, ``BD gen 9+``) of one case."""
    values = {metric: case.get(metric) for metric in COLUMNS}
    for generation in DEEP_GENERATIONS:
        pooled = generation == DEEP_GENERATIONS[-1]
        values[deep_label(generation)] = deep_generation_bd(case, generation, pooled)
    return values


def deep_label(generation: int) -> str:
    return f"BD gen {generation}" + ("+" if generation == DEEP_GENERATIONS[-1] else "")


def summarise(collected: dict[int, dict[str, dict]], labels: list[str], points: list[int], resamples: int,
              seed: int) -> dict[str, Any]:
    """Per point: the table, the seed spread, BD per generation and the paired differences, over the seeds
    whose every row is scored at that point (so all rows of a point rest on the same cases)."""
    metrics = list(COLUMNS) + [deep_label(g) for g in DEEP_GENERATIONS]
    by_point: dict[str, Any] = {}
    for n in points:
        seeds = [s for s, rows in collected.items() if all(n in rows[label] for label in labels)]
        if not seeds:
            continue
        cases = {label: {name: point_metrics(case) for s in seeds for name, case in collected[s][label][n].items()}
                 for label in labels}
        raw = {label: {name: case for s in seeds for name, case in collected[s][label][n].items()}
               for label in labels}
        table = {label: {m: mean_std([c[m] for c in cases[label].values()]) for m in metrics} for label in labels}
        spread = {label: {m: mean_std([mean_std([c[m] for name, c in cases[label].items()
                                                 if name.startswith(f"seed{s}/")])[0] for s in seeds])
                          for m in metrics} for label in labels}
        generations = {label: bd_by_generation(thin.generation_cases(raw[label])) for label in labels}
        differences = paired_differences(cases, REFERENCES, metrics, resamples=resamples, seed=seed)
        by_point[str(n)] = {"seeds": seeds, "cases": len(next(iter(cases.values()))), "table": table,
                            "seed_spread": spread, "BD_by_generation": generations,
                            "paired_differences": [d.as_dict() for d in differences]}
    return by_point


def missing(collected: dict[int, dict[str, dict]], labels: list[str], points: list[int]) -> list[str]:
    """What is not scored yet, as ``seed S: row @N`` lines."""
    return [f"seed {s}: {label} @{n}" for s, rows in collected.items() for label in labels for n in points
            if n not in rows[label]]


def markdown(summary: dict[str, Any], labels: list[str], header: str, gaps: list[str]) -> str:
    lines = [header, ""]
    if gaps:
        lines += [f"**Not scored yet** ({len(gaps)}): " + "; ".join(gaps) + ". Points list only the seeds whose "
                  "every row is scored there.", ""]
    for n, point in summary.items():
        lines += [f"## After {n} iterations ({point['cases']} held-out crops, seeds "
                  f"{', '.join(map(str, point['seeds']))})", "",
                  "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        lines += [f"| {label} | " + " | ".join(thin._cell(*point["table"][label][m], m) for m in COLUMNS) + " |"
                  for label in labels]
        if len(point["seeds"]) > 1:
            lines += ["", "Seed-to-seed spread of the per-seed means:", "",
                      "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
            lines += [f"| {label} | " + " | ".join(thin._cell(*point["seed_spread"][label][m], m) for m in COLUMNS)
                      + " |" for label in labels]
        lines += thin.generation_lines(point["BD_by_generation"], labels, "BD (%) per absolute generation:")
        lines += paired_lines(point["paired_differences"])
        lines.append("")
    return "\n".join(lines) + "\n"


def paired_lines(differences: list[dict]) -> list[str]:
    metrics = list(COLUMNS) + [deep_label(g) for g in DEEP_GENERATIONS]
    lines: list[str] = []
    for reference in REFERENCES:
        mine = [d for d in differences if d["reference"] == reference]
        if not mine:
            continue
        lines += ["", f"Paired per-case difference against {reference} (mean [95% bootstrap interval]; * excludes "
                  "0):", "", "| Method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
        for row in dict.fromkeys(d["row"] for d in mine):
            cells = []
            for metric in metrics:
                d = next((d for d in mine if d["row"] == row and d["metric"] == metric), None)
                digits = 3 if metric == "FPR" else 1
                cells.append("n/a" if d is None else f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, "
                             f"{d['high']:+.{digits}f}]" + ("*" if d["excludes_zero"] else ""))
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def figure(summary: dict[str, Any], labels: list[str], title: str) -> bytes:
    import matplotlib
    from matplotlib.figure import Figure

    panels = [("BD", "BD (%)"), ("TD", "TD (%)"), ("DSC", "DSC (%)")] + [
        (deep_label(g), f"{deep_label(g)} (%)") for g in DEEP_GENERATIONS]
    fig = Figure(figsize=(13, 7))
    axes = fig.subplots(2, 3).ravel()
    palette = matplotlib.colormaps["tab10"]
    points = [int(n) for n in summary]
    for axis, (metric, name) in zip(axes, panels, strict=True):
        for index, label in enumerate(labels):
            means = [summary[str(n)]["seed_spread"][label][metric][0] for n in points]
            spread = [summary[str(n)]["seed_spread"][label][metric][1] for n in points]
            xs = [n for n, m in zip(points, means, strict=True) if m is not None]
            ys = [m for m in means if m is not None]
            errors = [s or 0.0 for m, s in zip(means, spread, strict=True) if m is not None]
            axis.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label, color=palette(index % 10))
        axis.set_xscale("log")
        axis.set_xticks(points, [str(n) for n in points])
        axis.set_xlabel("training iterations")
        axis.set_ylabel(name)
        axis.set_ylim(-3, 103)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig, dpi=110)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plain = [key for key, row in thin.ALL_ROWS.items() if row.backbone == "plain"]
    parser.add_argument("--workdir", type=Path, default=Path("learning_curves_work"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=plain, default=list(DEFAULT_ROWS),
                        help="rows (thin_branches.py's keys): " + ", ".join(
                            f"{k} = {thin.ALL_ROWS[k].label}" for k in plain))
    parser.add_argument("--points", type=int_at_least(1), nargs="+", default=list(DEFAULT_POINTS),
                        help="training iterations at which each row is scored (the last is the run's length)")
    parser.add_argument("--iterations-per-epoch", type=int_at_least(1), default=50,
                        help="must divide every point (nnU-Net logs, plots and checkpoints once per epoch)")
    parser.add_argument("--train-cases", type=int_at_least(2), default=CROP_DEFAULTS["train_cases"])
    parser.add_argument("--test-cases", type=int_at_least(1), default=CROP_DEFAULTS["test_cases"])
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=CROP_DEFAULTS["shape"])
    parser.add_argument("--features", type=int, nargs="+", default=thin.PRESETS["cpu"]["features"])
    parser.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"), default=thin.PRESETS["cpu"]["patch"])
    parser.add_argument("--crop", default=CROP_DEFAULTS["crop"], help="phantom crop (write_phantoms(crop=...))")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), default=CROP_DEFAULTS["spacing"])
    parser.add_argument("--phantom-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--bootstrap-resamples", type=int, default=10_000)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dataset-id", type=int, default=960, help="nnU-Net data set id of seed 0 (one per seed)")
    parser.add_argument("--report", action="store_true", help="only write the report from the finished stages")
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    args.points = sorted(set(args.points))
    off_grid = [n for n in args.points if n % args.iterations_per_epoch]
    if off_grid:
        raise SystemExit(f"--points {off_grid} are not multiples of --iterations-per-epoch "
                         f"{args.iterations_per_epoch}: checkpoints are kept at the end of an epoch")
    args.phantom_options = thin.phantom_options(args)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    device = resolve_device(args.device)
    start = time.perf_counter()
    if not args.report:
        for seed in args.seeds:
            experiment(args, seed, device).run()
    minutes = (time.perf_counter() - start) / 60
    collected = {seed: collect(args, seed, device) for seed in args.seeds}
    labels = [thin.ALL_ROWS[key].label for key in args.rows]
    summary = summarise(collected, labels, args.points, args.bootstrap_resamples, args.bootstrap_seed)
    gaps = missing(collected, labels, args.points)
    machine = cpu_name() if device == "cpu" else thin._gpu_name()
    header = (f"# Learning curves on the thin-branch crops\n\nTable 2 rows on phantoms ({device}: {machine}), "
              f"paper protocol, mean ± std (population) over the held-out crops. Settings: {args.train_cases} "
              f"training / {args.test_cases} test phantoms of {'x'.join(map(str, args.shape))} voxels per seed, "
              f"phantom options {args.phantom_options}; features {args.features}, patch {args.patch}; each row "
              f"trained once per seed for {args.points[-1]} iterations ({args.iterations_per_epoch} per epoch, "
              f"poly schedule over the whole run, same seed for every row) and scored from the checkpoints kept "
              f"at {', '.join(map(str, args.points))} iterations. Report written by commit {_commit()}.")
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes(args.out / "learning_curves.md", markdown(summary, labels, header, gaps).encode())
    settings = {k: v if isinstance(v, int | float | str | list | dict | None) else str(v)
                for k, v in vars(args).items()}
    write_json(args.out / "learning_curves.json", {
        "header": header, "settings": settings, "rows": {thin.ALL_ROWS[k].label: thin.ALL_ROWS[k].trainer
                                                          for k in args.rows},
        "machine": {"device": device, "name": machine, "platform": platform.platform()},
        "wall_minutes": round(minutes, 1), "missing": gaps, "summary": thin._jsonable(summary),
        "per_seed": {str(s): {label: {str(k): v for k, v in rows.items()} for label, rows in found.items()}
                     for s, found in collected.items()}})
    if summary:
        write_bytes(args.out / "learning_curves.png", figure(summary, labels, "Thin-branch crops: mean over seeds "
                                                             "± seed-to-seed spread"))
    print(markdown(summary, labels, header, gaps))


def _commit() -> str:
    """This checkout's short commit (the trainings' own commit is stated where the results are quoted)."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
                              capture_output=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
