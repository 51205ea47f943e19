"""Do feature recalibration and attention distillation find more thin branches? The paper's Table 2 on phantoms.

Per seed: a phantom data set (its own phantoms), the real nnUNetv2_plan_and_preprocess, then every row's
budget trainer (nnUNetTrainer_Budget and nnUNetTrainerAirway*_Budget) trained with the same seed, the same
epochs x iterations and the same patch, predicted on the held-out phantoms and scored with the paper protocol.
Rows: nnU-Net default, Baseline, Baseline + cSE, Baseline + PE, Baseline + FR, Baseline + AD, Baseline + FR + AD
(``--rows`` picks some), plus the attention-distillation variants named with ``--ad-variants``.
Writes, into --out:
  thin_branches.md    mean +- std of BD, TD, TPR, FPR, DSC per row (Table 2 layout), BD per generation, paired
                      per-case differences against Baseline and nnU-Net default (and of the AD variants
                      against the paper's AD) with 95% bootstrap intervals, and the distillation term,
                      segmentation loss and attention-map entropies per epoch
  thin_branches.json  every number, per seed and case, with the settings, the machine, the wall time and the
                      stages' summed time
  thin_branches.png   BD per airway generation per row, and the distillation term per epoch
The work dirs are resumable (rerun the same command after an interruption; rows can be added later).
``--crop``, ``--spacing`` and ``--phantom-option`` are passed to the phantom generator (write_phantoms).
``--preset cuda`` sets the GPU protocol's defaults (docs/table2-protocol.md).

    python benchmarks/thin_branches.py --workdir /tmp/thin --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from common import cpu_name, png_bytes

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.demo.pipeline import DATA_STAGES, FOLD, DemoSettings, PhantomExperiment, resolve_device
from nnunet_airway.evaluation.comparison import bd_by_generation, mean_std, paired_differences
from nnunet_airway.trainers.budget_variables import EPOCHS_VARIABLE
from nnunet_airway.trainers.declarations import (
    AD_VARIANT,
    BY_KEY,
    NNUNET_DEFAULT_BUDGET,
    TABLE2,
    TOPOLOGY,
    TrainerDeclaration,
    declared,
)
from nnunet_airway.writing import write_bytes, write_json


class Row(NamedTuple):
    label: str
    trainer: str
    distillation_weight: float = 0.0  # of the trainer, for the distillation report
    backbone: str = "plain"  # the airway planner's preset the row's plans come from (one experiment per backbone)


def _row(declaration: TrainerDeclaration) -> Row:
    return Row(declaration.label, declaration.budget_name, declaration.distillation_weight)


# the paper's Table 2, plus nnU-Net's own default trainer, in table order (trainers/declarations.py)
ROWS = {"nnunet": Row("nnU-Net default", NNUNET_DEFAULT_BUDGET), **{d.key: _row(d) for d in declared(TABLE2)}}
# rows on request (--rows): the skeleton losses on Baseline and FR+AD, and both models on nnU-Net's residual
# encoder (ResEnc M preset, same patch, features and budget; about 3x the plain network's CPU time per iteration)
EXTRA_ROWS = {
    **{d.key: _row(d) for d in declared(TOPOLOGY)},
    "nnunet-resenc": Row("nnU-Net default (ResEnc M)", NNUNET_DEFAULT_BUDGET, backbone="resenc-m"),
    "frad-resenc": Row("Baseline + FR + AD (ResEnc M)", BY_KEY["frad"].budget_name, BY_KEY["frad"].distillation_weight,
                       backbone="resenc-m"),
}
ALL_ROWS = {**ROWS, **EXTRA_ROWS}
# Baseline + AD with the released code's mean reduction and/or a tenth of the paper's weight
AD_VARIANTS = {d.key: _row(d) for d in declared(AD_VARIANT)}
REFERENCES = ("Baseline", "nnU-Net default")  # each row's paired differences are taken against these
PAPER_AD = ROWS["ad"].label  # the AD variants are also taken against the paper's setting (sum, weight 0.1)
COLUMNS = ("BD", "TD", "TPR", "FPR", "DSC")
ROW_STAGES = ("train", "predict", "evaluate")  # the pipeline's stages of one row
# BD per generation: the first key a case has (an absolute-generation key, where the evaluator gives one, first)
GENERATION_KEYS = ("BD_by_absolute_generation", "BD_by_generation")
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"train_cases": 12, "test_cases": 4, "shape": [80, 112, 112], "features": [8, 16, 32, 64, 64],
            "patch": [48, 64, 64], "epochs": 10, "iterations_per_epoch": 20},
    "cuda": {"train_cases": 24, "test_cases": 8, "shape": [128, 160, 160], "features": [32, 64, 128, 256, 320],
             "patch": [96, 128, 128], "epochs": 100, "iterations_per_epoch": 100},
}


def phantom_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments for write_phantoms from --crop, --spacing and --phantom-option KEY=VALUE (VALUE
    read as JSON where it parses); a SystemExit names any that this checkout's write_phantoms lacks."""
    from nnunet_airway.phantoms.generate import write_phantoms

    options: dict[str, Any] = {}
    for item in args.phantom_option:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.crop is not None:
        options["crop"] = args.crop
    if args.spacing is not None:
        options["spacing_xyz"] = list(args.spacing)
    known = inspect.signature(write_phantoms).parameters
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SystemExit(f"write_phantoms has no option {', '.join(unknown)} in this checkout (it takes "
                         f"{', '.join(known)}); --crop needs the phantom generator with crops")
    return options


def selected_rows(args: argparse.Namespace) -> list[Row]:
    return [ALL_ROWS[key] for key in args.rows] + [AD_VARIANTS[key] for key in args.ad_variants]


def run_seed(args: argparse.Namespace, rows: list[Row], seed: int, device: str) -> tuple[dict[str, dict], float]:
    """:func:`run_backbone` for each backbone the rows use (the plain one in ``seed_<seed>``, another in
    ``seed_<seed>_<backbone>`` with its own data set id: the same phantoms, planned with that preset)."""
    results: dict[str, dict] = {}
    seconds = 0.0
    for index, backbone in enumerate(dict.fromkeys(row.backbone for row in rows)):
        chosen = [row for row in rows if row.backbone == backbone]
        found, spent = run_backbone(args, chosen, seed, device, backbone, offset=20 * index)
        results.update(found)
        seconds += spent
    return {row.label: results[row.label] for row in rows}, seconds


def backbone_tag(backbone: str) -> str:
    """"" for the plain backbone, e.g. "ResEncM" for "resenc-m" (in data set names)."""
    return "" if backbone == "plain" else "ResEnc" + backbone.split("-")[-1].upper()


def run_backbone(args: argparse.Namespace, rows: list[Row], seed: int, device: str, backbone: str = "plain",
                 offset: int = 0) -> tuple[dict[str, dict], float]:
    """Train, predict and evaluate every row on the phantom data set of ``seed``; per row label its cases
    (keyed ``seed<seed>/<case>``), training seconds and per-epoch loss components; and the seconds of the
    stages these rows needed, whichever invocation ran them."""
    suffix = "" if backbone == "plain" else f"_{backbone}"
    settings = DemoSettings(cases=args.train_cases, test_cases=args.test_cases, seed=seed,
                            iterations_per_epoch=args.iterations_per_epoch, shape_zyx=tuple(args.shape),
                            dataset_id=args.dataset_id + seed + offset,
                            dataset_name=f"AirwayThinBranches{seed}{backbone_tag(backbone)}",
                            features=tuple(args.features), patch_zyx=tuple(args.patch), backbone=backbone)
    budget = {EPOCHS_VARIABLE: str(args.epochs)}  # iterations per epoch: from the settings
    experiment = PhantomExperiment(args.workdir / f"seed_{seed}{suffix}", settings, device,
                                   tuple(row.trainer for row in rows), budget, phantom_options=args.phantom_options,
                                   attention_maps=False)
    state = experiment.run()
    results = {}
    for row in rows:
        evaluated = state["stages"][experiment.stage_name("evaluate", row.trainer)]["result"]
        summary = json.loads(Path(evaluated["summary"]).read_text())
        components = experiment.model_dir(row.trainer) / f"fold_{FOLD}" / "loss_components.json"
        results[row.label] = {
            "trainer": row.trainer,
            "cases": {f"seed{seed}/{case}": metrics for case, metrics in summary["cases"].items()},
            "train_seconds": state["stages"][experiment.stage_name("train", row.trainer)]["result"].get("seconds"),
            "loss_components": json.loads(components.read_text()) if components.exists() else [],
        }
    names = [experiment.stage_name(kind, row.trainer) for row in rows for kind in ROW_STAGES]
    return results, stage_seconds(state["stages"], names)


def stage_seconds(stages: dict[str, dict], row_stages: list[str]) -> float:
    """Seconds of the data set's stages and of the named row stages in a work dir's ledger (other rows
    trained in the same work dir are not counted)."""
    wanted = {*DATA_STAGES, *row_stages}
    return sum(entry.get("seconds", 0.0) for name, entry in stages.items() if name in wanted)


def pooled_cases(per_seed: dict[int, dict[str, dict]], label: str) -> dict[str, dict]:
    return {name: case for seed in per_seed.values() for name, case in seed[label]["cases"].items()}


def generation_cases(cases: dict[str, dict]) -> dict[str, dict]:
    """The cases with ``BD_by_generation`` set from the first of GENERATION_KEYS they have; SystemExit when only
    some have the absolute key (summaries from before and after ``evaluate --truth``: their generations differ
    on crops)."""
    key = next((k for k in GENERATION_KEYS if any(k in case for case in cases.values())), GENERATION_KEYS[-1])
    without = sorted(name for name, case in cases.items() if key not in case)
    if without:
        raise SystemExit(f"{len(without)} case(s) lack {key} ({', '.join(without[:5])}): their evaluation predates "
                         f"it; remove the 'evaluate ...' stages from their seed's state.json and rerun to score "
                         f"them again")
    return {name: {"BD_by_generation": case.get(key) or {}} for name, case in cases.items()}


def _cell(mean: float | None, std: float | None, metric: str) -> str:
    digits = 3 if metric == "FPR" else 1
    return "n/a" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summarise(per_seed: dict[int, dict[str, dict]], rows: list[Row], resamples: int, seed: int) -> dict[str, Any]:
    """Every statistic of the report, as data (the markdown and the figure are made from it)."""
    cases = {row.label: pooled_cases(per_seed, row.label) for row in rows}
    table = {row.label: {m: mean_std([c.get(m) for c in cases[row.label].values()]) for m in COLUMNS}
             for row in rows}
    seed_spread = {}
    for row in rows:
        seed_spread[row.label] = {}
        for metric in COLUMNS:
            means = [mean_std([c.get(metric) for c in s[row.label]["cases"].values()])[0] for s in per_seed.values()]
            seed_spread[row.label][metric] = mean_std(means)
    generations = {row.label: bd_by_generation(generation_cases(cases[row.label])) for row in rows}
    differences = paired_differences(cases, REFERENCES, COLUMNS, resamples=resamples, seed=seed)
    variants = {label: cases[label] for label in [PAPER_AD] + [row.label for row in AD_VARIANTS.values()]
                if label in cases}
    if PAPER_AD in variants and len(variants) > 1:
        differences += paired_differences(variants, [PAPER_AD], COLUMNS, resamples=resamples, seed=seed)
    return {"table": table, "seed_spread": seed_spread, "BD_by_generation": generations,
            "paired_differences": [d.as_dict() for d in differences],
            "distillation": distillation_summary(per_seed, rows)}


def distillation_summary(per_seed: dict[int, dict[str, dict]], rows: list[Row]) -> dict[str, Any]:
    """Per row: each loss component per epoch, averaged over seeds (epochs every seed reached)."""
    found = {}
    for row in rows:
        runs = [s[row.label]["loss_components"] for s in per_seed.values() if s[row.label]["loss_components"]]
        if not runs:
            continue
        epochs = min(len(run) for run in runs)
        per_epoch = []
        for epoch in range(epochs):
            records = [run[epoch] for run in runs]
            entry: dict[str, Any] = {"epoch": epoch}
            for key in ("segmentation", "distillation", "attention_entropy"):
                if all(key in r for r in records):
                    entry[key] = np.mean([r[key] for r in records], axis=0).tolist()
            if "distillation" in entry:
                entry["weighted_distillation"] = row.distillation_weight * entry["distillation"]
            per_epoch.append(entry)
        found[row.label] = {"weight": row.distillation_weight, "per_epoch": per_epoch}
    return found


def markdown(summary: dict[str, Any], rows: list[Row], header: str, n_seeds: int) -> str:
    labels = [row.label for row in rows]
    head = "| Method | " + " | ".join(COLUMNS) + " |\n" + "|---" * (len(COLUMNS) + 1) + "|"
    lines = [header, "", head]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(_cell(*summary["table"][label][m], m) for m in COLUMNS) + " |")
    if n_seeds > 1:
        lines += ["", "Seed-to-seed spread of the per-seed means (mean ± std over seeds):", "", head]
        for label in labels:
            lines.append(f"| {label} | " + " | ".join(_cell(*summary["seed_spread"][label][m], m)
                                                       for m in COLUMNS) + " |")
    lines += generation_lines(summary["BD_by_generation"], labels,
                              "BD (%) per airway generation (trachea = 0; mean over the cases that have the "
                              "generation):")
    lines += paired_markdown(summary["paired_differences"])
    lines += distillation_markdown(summary["distillation"])
    return "\n".join(lines) + "\n"


def generation_lines(by_generation: dict[str, dict[int, float]], labels: list[str], title: str) -> list[str]:
    """The Markdown table of BD per generation (one row per label, "n/a" where a row lacks a generation)."""
    generations = sorted({g for label in labels for g in by_generation[label]})
    lines = ["", title, "", "| Method | " + " | ".join(f"gen {g}" for g in generations) + " |",
             "|---" * (len(generations) + 1) + "|"]
    for label in labels:
        means = by_generation[label]
        lines.append(f"| {label} | " + " | ".join(f"{means[g]:.1f}" if g in means else "n/a"
                                                  for g in generations) + " |")
    return lines


def paired_markdown(differences: list[dict]) -> list[str]:
    lines: list[str] = []
    excluding = []
    references = list(REFERENCES) + [PAPER_AD]
    pairs = {(d["row"], d["reference"]) for d in differences}
    for reference in references:
        mine = [d for d in differences if d["reference"] == reference]
        if not mine:
            continue
        n_cases = sorted({d["cases"] for d in mine})
        lines += ["", f"Paired per-case difference against {reference} (row minus {reference}; mean and 95% "
                  f"percentile-bootstrap interval over {'/'.join(map(str, n_cases))} cases; * marks an interval "
                  "that excludes 0):", "",
                  "| Method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        for row in dict.fromkeys(d["row"] for d in mine):
            cells = []
            for metric in COLUMNS:
                d = next((d for d in mine if d["row"] == row and d["metric"] == metric), None)
                digits = 3 if metric == "FPR" else 1
                cells.append("n/a" if d is None else f"{d['mean']:+.{digits}f} [{d['low']:+.{digits}f}, "
                             f"{d['high']:+.{digits}f}]" + ("*" if d["excludes_zero"] else ""))
                # a pair of references is listed once (Baseline vs nnU-Net default, not also the other way)
                mirrored = (reference, row) in pairs and references.index(row) > references.index(reference)
                if d is not None and d["excludes_zero"] and not mirrored:
                    excluding.append(f"{row} vs {reference}: {metric} {d['mean']:+.{digits}f}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if differences:
        lines += ["", "Differences whose 95% interval excludes 0: " + ("; ".join(excluding) if excluding else
                                                                      "none") + "."]
    return lines


def distillation_markdown(distillation: dict[str, Any]) -> list[str]:
    rows = {label: d for label, d in distillation.items() if d["per_epoch"] and "distillation" in d["per_epoch"][0]}
    if not rows:
        return []
    lines = ["", "Attention distillation per epoch (means over seeds of the training iterations; first -> last "
             "epoch): segmentation loss, distillation term (unweighted, and times the weight), and the entropy "
             "of each softmaxed attention map divided by log(voxels), coarse to fine (1 = uniform):", "",
             "| Method | weight | segmentation | distillation | weight x distillation | entropy per scale |",
             "|---|---|---|---|---|---|"]
    for label, d in rows.items():
        first, last = d["per_epoch"][0], d["per_epoch"][-1]
        entropies = " / ".join(f"{a:.3f}->{b:.3f}" for a, b in zip(first["attention_entropy"],
                                                                     last["attention_entropy"], strict=True))
        lines.append(f"| {label} | {d['weight']} | {first['segmentation']:.3f} -> {last['segmentation']:.3f} | "
                     f"{first['distillation']:.3g} -> {last['distillation']:.3g} | "
                     f"{first['weighted_distillation']:.3g} -> {last['weighted_distillation']:.3g} | {entropies} |")
    return lines


def figure(summary: dict[str, Any], rows: list[Row], title: str) -> bytes:
    import matplotlib
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    palette = matplotlib.colormaps["tab10" if len(rows) <= 10 else "tab20"]
    colour = {row.label: palette(index % palette.N) for index, row in enumerate(rows)}  # the same in both panels
    for row in rows:
        means = summary["BD_by_generation"][row.label]
        left.plot(list(means), list(means.values()), marker="o", label=row.label, color=colour[row.label])
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set_xlabel("airway generation")
    left.set_ylabel("branches detected, BD (%)")
    left.set_ylim(-2, 102)
    left.set_title(title, fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    for label, d in summary["distillation"].items():
        points = [(e["epoch"], e["distillation"]) for e in d["per_epoch"] if e.get("distillation")]
        if points:
            right.plot(*zip(*points, strict=True), marker=".", label=label, color=colour.get(label))
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel("distillation term (unweighted)")
    right.set_title("attention distillation per epoch", fontsize=9)
    right.grid(alpha=0.3)
    if right.lines:
        right.legend(fontsize=7)
    return png_bytes(fig, dpi=120)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                        help="defaults for cases, shape, features, patch, epochs and iterations (options override)")
    parser.add_argument("--workdir", type=Path, default=Path("thin_branches_work"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=list(ALL_ROWS), default=list(ROWS),
                        help="rows to run (default: the Table 2 rows): " + ", ".join(
                            f"{k} = {r.label}" for k, r in ALL_ROWS.items()))
    parser.add_argument("--ad-variants", nargs="*", choices=list(AD_VARIANTS), default=[],
                        help="extra rows: " + ", ".join(f"{k} = {r.label}" for k, r in AD_VARIANTS.items()))
    parser.add_argument("--train-cases", type=int_at_least(2))
    parser.add_argument("--test-cases", type=int_at_least(1))
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--features", type=int, nargs="+",
                        help="features per stage; stages nnU-Net plans beyond these repeat the last")
    parser.add_argument("--patch", type=int, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--epochs", type=int_at_least(1))
    parser.add_argument("--iterations-per-epoch", type=int_at_least(1))
    parser.add_argument("--crop", help="phantom crop, passed to write_phantoms(crop=...), e.g. lobe")
    parser.add_argument("--spacing", type=positive_float("mm"), nargs=3, metavar=("X", "Y", "Z"),
                        help="phantom voxel spacing in mm, passed to write_phantoms(spacing_xyz=...)")
    parser.add_argument("--phantom-option", action="append", default=[], metavar="KEY=VALUE",
                        help="any other write_phantoms keyword argument (VALUE as JSON), repeatable")
    parser.add_argument("--bootstrap-resamples", type=int, default=10_000)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dataset-id", type=int, default=960,
                        help="first nnU-Net data set id (one per seed; rows on another backbone: 20 more)")
    return parser


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.phantom_options = phantom_options(args)
    if "baseline" not in args.rows and "nnunet" not in args.rows and not ("ad" in args.rows and args.ad_variants):
        print("note: without the baseline and nnunet rows (or the ad row and --ad-variants) there are no paired "
              "differences")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    rows = selected_rows(args)
    device = resolve_device(args.device)
    start = time.perf_counter()
    runs = {seed: run_seed(args, rows, seed, device) for seed in args.seeds}
    minutes = (time.perf_counter() - start) / 60
    per_seed = {seed: results for seed, (results, _) in runs.items()}
    # the rows may come from several invocations on the same work dir: their stages' own seconds add up
    stage_minutes = sum(seconds for _, seconds in runs.values()) / 60
    machine = cpu_name() if device == "cpu" else _gpu_name()
    n_cases = len(pooled_cases(per_seed, rows[0].label))
    phantoms = f"{args.shape[0]}x{args.shape[1]}x{args.shape[2]} voxels" + (
        f", phantom options {args.phantom_options}" if args.phantom_options else "")
    header = (f"Thin-branch benchmark on phantoms ({device}: {machine}), paper protocol, mean ± std (population) "
              f"over {n_cases} held-out cases from {len(per_seed)} seed(s). Settings: {args.train_cases} training / "
              f"{args.test_cases} test phantoms of {phantoms} per seed; network features {args.features}, patch "
              f"{args.patch}; {args.epochs} epochs x {args.iterations_per_epoch} iterations per row, same seed; "
              f"time of every stage of these rows {stage_minutes:.0f} min (this invocation {minutes:.0f} min; "
              f"stages done by an earlier invocation on the same work dir are reused).")
    summary = summarise(per_seed, rows, args.bootstrap_resamples, args.bootstrap_seed)
    text = markdown(summary, rows, header, len(per_seed))
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes(args.out / "thin_branches.md", text.encode())
    settings = {k: v if isinstance(v, int | float | str | list | dict | None) else str(v)
                for k, v in vars(args).items()}
    write_json(args.out / "thin_branches.json", {
        "header": header, "settings": settings, "rows": {row.label: row.trainer for row in rows},
        "machine": {"device": device, "name": machine, "platform": platform.platform()},
        "wall_minutes": round(minutes, 1), "stage_minutes": round(stage_minutes, 1), "summary": _jsonable(summary),
        "per_seed": per_seed})
    write_bytes(args.out / "thin_branches.png", figure(summary, rows, f"BD per generation, {device}, "
                                                       f"{len(per_seed)} seed(s)"))
    print(text)


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


if __name__ == "__main__":
    main()
