"""One picture per case: the reference tree in projection (detected branches green, missed red,
false-positive voxels blue) beside a bar plot of BD per generation. matplotlib (Agg) only."""

from __future__ import annotations

import io
import os

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global backend state, no window

from nnunet_airway.evaluation.metrics import CaseScore
from nnunet_airway.writing import write_bytes

MAX_POINTS = 200_000  # per layer, subsampled beyond this to keep pictures light
DETECTED, MISSED, FALSE_POSITIVE, NOT_SCORED = "#1a9850", "#d73027", "#4575b4", "#7f7f7f"


def _subsample(points: np.ndarray, seed: int = 0) -> np.ndarray:
    if len(points) <= MAX_POINTS:
        return points
    return points[np.random.default_rng(seed).choice(len(points), MAX_POINTS, replace=False)]


def _project(points: np.ndarray, spacing_zyx: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Coronal-style projection along the array's Y axis: horizontal = X (mm), vertical = Z (mm)."""
    return points[:, 2] * spacing_zyx[2], points[:, 0] * spacing_zyx[0]


def render_case(score: CaseScore, path: str | os.PathLike, title: str = "") -> None:
    """Write a PNG of one scored case (atomic write). The projection runs along the array's second axis (Y);
    the first axis (Z) points up, the third (X) to the right, both in mm."""
    ref = score.reference
    spacing = score.spacing_zyx
    fig = Figure(figsize=(12, 6))
    ax_tree, ax_gen = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    silhouette = ref.mask.any(axis=1)
    z0, x0 = ref.box[0].start, ref.box[2].start
    extent = (x0 * spacing[2], (x0 + silhouette.shape[1]) * spacing[2],
              z0 * spacing[0], (z0 + silhouette.shape[0]) * spacing[0])
    ax_tree.imshow(silhouette, cmap="Greys", alpha=0.15, extent=extent, interpolation="nearest", aspect="equal",
                   origin="lower")  # array z grows upwards (superior in LPS-oriented CT)
    fp = _subsample(score.false_positive_coords)
    if len(fp):
        ax_tree.scatter(*_project(fp, spacing), s=1.0, c=FALSE_POSITIVE, alpha=0.5, linewidths=0,
                        label="false positive voxels")
    layers = {DETECTED: [], MISSED: [], NOT_SCORED: []}
    for branch, detected, counted in zip(ref.tree.branches, score.branch_detected, score.branch_counted,
                                         strict=True):
        colour = NOT_SCORED if not counted else DETECTED if detected else MISSED
        layers[colour].append(branch.voxels)
    layers[NOT_SCORED].append(ref.tree.junction_voxels)
    labels = {DETECTED: "detected branch", MISSED: "missed branch", NOT_SCORED: "trachea / branching points"}
    n_points = max(sum(len(p) for parts in layers.values() for p in parts), 1)
    size = float(np.clip(20000.0 / n_points, 0.5, 6.0))
    for colour, parts in layers.items():
        points = ref.volume_coords(np.concatenate(parts)) if parts else np.zeros((0, 3))
        if len(points):
            ax_tree.scatter(*_project(points, spacing), s=size, c=colour, linewidths=0, label=labels[colour])
    ax_tree.set_xlabel("x (mm, array axis 3)")
    ax_tree.set_ylabel("z (mm, array axis 1)")
    ax_tree.legend(loc="lower right", fontsize=8, markerscale=4)
    m = score.metrics.as_dict()

    def fmt(name: str) -> str:
        value = m[name]
        return "n/a" if value is None else f"{value:.3f}" if name == "FPR" else f"{value:.1f}"

    ax_tree.set_title(f"{title}  BD {fmt('BD')}  TD {fmt('TD')}  TPR {fmt('TPR')}  FPR {fmt('FPR')}  "
                      f"DSC {fmt('DSC')}", fontsize=10)
    generations = [int(g) for g in m["BD_by_generation"]]
    values = [m["BD_by_generation"][str(g)] or 0.0 for g in generations]
    bars = ax_gen.bar(generations, values, color=DETECTED)
    branch_generation = np.array([b.generation for b in ref.tree.branches], dtype=np.int64)
    for bar, g in zip(bars, generations, strict=True):
        in_g = score.branch_counted & (branch_generation == g)
        ax_gen.annotate(f"{int((score.branch_detected & in_g).sum())}/{int(in_g.sum())}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax_gen.set_xticks(generations)
    ax_gen.set_ylim(0, 105)
    ax_gen.set_xlabel("generation (trachea = 0)")
    ax_gen.set_ylabel("BD (%)")
    ax_gen.set_title(f"BD per generation ({m['branches_detected']}/{m['branches_reference']} branches)",
                     fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_bytes(path, buffer.getvalue())
