"""Are the generated airway trees like real ones? Branch statistics per generation, generated against real.

Real trees: airway labels parsed with the evaluator's tree parse (26-connected largest component, Lee
skeleton, the parse's generations, lengths and lumen radii); by default the three ATM'22 segmentations of
ATM_224 in ../shared/data/atm22_trees (MIT). Generated trees: the labelled branches of whole adult chests
grown at --spacing exactly as ``generate_phantom`` grows them (``grow_case``, no rendering), read from the
construction (the generator's own lengths, radii and angles). Per absolute generation (trachea = 0):
branch count, lumen radius, length, length-to-diameter ratio, the angle between a branch's axis and its
parent's; per tree: the deepest labelled generation below each generation-2 branch (the lobar level, a
proxy for lobes: the parse knows no lobes).
Writes --out/tree_statistics.{md,json,png}.

    python benchmarks/tree_statistics.py --cases 6 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import cpu_name, png_bytes

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.evaluation.reference import parse_tree
from nnunet_airway.image_io import read_image
from nnunet_airway.phantoms import generate
from nnunet_airway.writing import write_bytes, write_json

SHARED_TREES = Path(__file__).resolve().parents[2] / "shared" / "data" / "atm22_trees"
MEASURES = ("radius_mm", "length_mm", "length_to_diameter", "angle_deg")
LOBAR_GENERATION = 2


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def _ends(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two extreme points (mm) of a branch's skeleton along its principal axis."""
    if len(points) == 1:
        return points[0], points[0]
    centred = points - points.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    along = centred @ axis
    return points[int(np.argmin(along))], points[int(np.argmax(along))]


def real_branches(path: Path) -> list[dict[str, Any]]:
    """One record per parsed branch of a real label: generation, parent, radius, length, L/D, angle."""
    label, geometry = read_image(path)
    spacing = np.asarray(geometry.spacing_zyx, float)
    parsed = parse_tree(label > 0, tuple(spacing), connectivity=26)
    coords = parsed.skeleton.coords * spacing
    branches = parsed.tree.branches
    by_id = {b.id: b for b in branches}
    children: dict[int, list[int]] = {}
    for b in branches:
        if b.parent is not None:
            children.setdefault(b.parent, []).append(b.id)
    ends = {b.id: _ends(coords[b.voxels]) for b in branches}
    axis: dict[int, np.ndarray] = {}
    for b in branches:  # parents come first: a branch runs from the end nearer its parent (the trachea: its children)
        low, high = ends[b.id]
        if b.parent is not None:
            near = coords[by_id[b.parent].voxels]
        else:
            near = np.concatenate([coords[by_id[c].voxels] for c in children.get(b.id, [])] or [low[None]])
        d_low = np.min(np.linalg.norm(near - low, axis=1))
        d_high = np.min(np.linalg.norm(near - high, axis=1))
        start, end = (low, high) if (d_low <= d_high) == (b.parent is not None) else (high, low)
        axis[b.id] = end - start
    records = []
    for b in branches:
        angle = None
        if b.parent is not None and np.linalg.norm(axis[b.id]) > 0 and np.linalg.norm(axis[b.parent]) > 0:
            angle = _angle(axis[b.parent], axis[b.id])
        records.append({"id": b.id, "parent": b.parent, "generation": b.generation, "radius_mm": b.radius_mm,
                        "length_mm": b.length_mm,
                        "length_to_diameter": b.length_mm / (2 * b.radius_mm) if b.radius_mm > 0 else None,
                        "angle_deg": angle})
    return records


def generated_branches(seed: int, spacing: tuple[float, float, float]) -> list[dict[str, Any]]:
    """One record per labelled branch of a whole adult chest grown at ``spacing`` (construction values)."""
    shape = generate.chest_grid_shape(spacing)
    grown = generate.grow_case(seed, shape, spacing, "chest", "clinical")
    records = []
    for b in grown.branches:
        if not b.labelled:
            continue
        parent = grown.branches[b.parent] if b.parent is not None else None
        records.append({"id": b.id, "parent": b.parent, "generation": b.generation, "radius_mm": b.radius,
                        "length_mm": b.length, "length_to_diameter": b.length / (2 * b.radius),
                        "angle_deg": _angle(parent.direction, b.direction) if parent is not None else None})
    return records


def lobar_depths(records: list[dict[str, Any]]) -> list[int]:
    """The deepest generation below (and including) each generation-2 branch of one tree."""
    by_id = {r["id"]: r for r in records}

    def lobar_ancestor(record: dict[str, Any]) -> int | None:
        while record["generation"] > LOBAR_GENERATION:
            if record["parent"] not in by_id:
                return None
            record = by_id[record["parent"]]
        return record["id"] if record["generation"] == LOBAR_GENERATION else None

    deepest: dict[int, int] = {}
    for record in records:
        ancestor = lobar_ancestor(record)
        if ancestor is not None:
            deepest[ancestor] = max(deepest.get(ancestor, 0), record["generation"])
    return sorted(deepest.values())


def per_generation(trees: list[list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Per generation: mean branch count per tree, and median and 25-75th percentiles of each measure."""
    generations = sorted({r["generation"] for tree in trees for r in tree})
    found = {}
    for g in generations:
        rows = [r for tree in trees for r in tree if r["generation"] == g]
        entry: dict[str, Any] = {"branches_per_tree": len(rows) / len(trees)}
        for measure in MEASURES:
            values = np.array([r[measure] for r in rows if r[measure] is not None], float)
            entry[measure] = None if values.size == 0 else [float(np.percentile(values, q)) for q in (25, 50, 75)]
        found[g] = entry
    return found


def markdown(stats: dict[str, dict[int, dict]], depths: dict[str, list[list[int]]], header: str) -> str:
    lines = [header, ""]
    generations = sorted({g for s in stats.values() for g in s})
    names = {"branches_per_tree": "branches per tree", "radius_mm": "lumen radius (mm), median [IQR]",
             "length_mm": "length (mm), median [IQR]", "length_to_diameter": "length / diameter, median [IQR]",
             "angle_deg": "angle to the parent's axis (deg), median [IQR]"}
    for key, name in names.items():
        lines += [f"### {name}", "", "| trees | " + " | ".join(f"gen {g}" for g in generations) + " |",
                  "|---" * (len(generations) + 1) + "|"]
        for source, by_generation in stats.items():
            cells = []
            for g in generations:
                value = by_generation.get(g, {}).get(key)
                if value is None:
                    cells.append("-")
                elif key == "branches_per_tree":
                    cells.append(f"{value:.1f}")
                else:
                    cells.append(f"{value[1]:.1f} [{value[0]:.1f}, {value[2]:.1f}]")
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### deepest labelled generation below each generation-2 branch (per tree)", ""]
    for source, per_tree in depths.items():
        lines.append(f"- {source}: " + "; ".join(", ".join(map(str, d)) for d in per_tree))
    return "\n".join(lines) + "\n"


def figure(stats: dict[str, dict[int, dict]]) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 3.6))
    axes = fig.subplots(1, 5)
    keys = [("branches_per_tree", "branches per tree"), ("radius_mm", "lumen radius (mm)"),
            ("length_mm", "length (mm)"), ("length_to_diameter", "length / diameter"),
            ("angle_deg", "angle to parent (deg)")]
    for axis, (key, name) in zip(axes, keys, strict=True):
        for source, by_generation in stats.items():
            gs = [g for g, e in by_generation.items() if e.get(key) is not None]
            if key == "branches_per_tree":
                axis.plot(gs, [by_generation[g][key] for g in gs], marker="o", label=source)
                axis.set_yscale("log")
            else:
                median = [by_generation[g][key][1] for g in gs]
                low = [by_generation[g][key][1] - by_generation[g][key][0] for g in gs]
                high = [by_generation[g][key][2] - by_generation[g][key][1] for g in gs]
                axis.errorbar(gs, median, yerr=[low, high], marker="o", capsize=2, label=source)
        axis.set_xlabel("generation (trachea = 0)")
        axis.set_title(name, fontsize=9)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return png_bytes(fig, dpi=110)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", type=Path, nargs="+", help="real airway labels (default: the shared ATM'22 trees)")
    parser.add_argument("--cases", type=int_at_least(1), default=6, help="generated trees, case_seed(--seed, i)")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument("--spacing", type=positive_float("mm"), nargs=3, default=[0.7, 0.7, 0.7],
                        help="grid the generated trees are grown and labelled on (x y z mm)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    real = args.real or sorted(SHARED_TREES.glob("*.nii.gz"))
    if not real:
        raise SystemExit(f"no real labels: give --real LABEL ... ({SHARED_TREES} has none)")
    start = time.perf_counter()
    real_trees = [real_branches(path) for path in real]
    spacing = tuple(args.spacing)
    generated_trees = [generated_branches(generate.case_seed(args.seed, i), spacing) for i in range(args.cases)]
    seconds = time.perf_counter() - start
    stats = {f"real ({len(real_trees)})": per_generation(real_trees),
             f"generated ({len(generated_trees)})": per_generation(generated_trees)}
    depths = {f"real ({len(real_trees)})": [lobar_depths(t) for t in real_trees],
              f"generated ({len(generated_trees)})": [lobar_depths(t) for t in generated_trees]}
    header = (f"Branch statistics per absolute generation: real trees {', '.join(p.name for p in real)} (the "
              f"evaluator's parse) against {len(generated_trees)} generated whole-chest trees at {spacing} mm "
              f"(labelled branches, construction values); {cpu_name()}, {seconds:.0f} s.")
    args.out.mkdir(parents=True, exist_ok=True)
    text = markdown(stats, depths, header)
    write_bytes(args.out / "tree_statistics.md", text.encode())
    write_json(args.out / "tree_statistics.json", {"header": header, "per_generation": {
        k: {str(g): v for g, v in s.items()} for k, s in stats.items()}, "lobar_depths": depths,
        "real": [str(p) for p in real], "trees": {"real": real_trees, "generated": generated_trees}})
    write_bytes(args.out / "tree_statistics.png", figure(stats))
    print(text)


if __name__ == "__main__":
    main()
