"""The summary: definitions of every number, mean and std over cases, the console table and the CSV."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np

from nnunet_airway.evaluation.metrics import DETECTION_THRESHOLD, METRIC_NAMES
from nnunet_airway.evaluation.tree import MIN_PIECE_VOXELS

COUNT_NAMES = ("branches_reference", "branches_detected", "tree_length_mm", "detected_length_mm",
               "loops_broken", "spurs_pruned", "reference_voxels_outside_largest_component")
TABLE_COLUMNS = ("BD", "TD", "TPR", "FPR", "DSC")

DEFINITIONS: dict[str, str] = {
    "units": "BD, TD, TD_mm, TPR, FPR, DSC, precision, clDice and BD_by_generation are percentages; "
             "null means undefined (empty denominator). std is the population standard deviation over cases.",
    "prediction": "largest connected component of the prediction (6-connected by default, --connectivity).",
    "reference": f"largest connected component of the reference, holes filled; Lee skeleton (skimage skeletonize); "
                 f"junction voxels have >= 3 26-neighbours; pieces between junctions under {MIN_PIECE_VOXELS} voxels "
                 f"are dropped (free-ended) or merged into their junctions (between two junctions).",
    "spurs": "a free-ended piece whose protrusion (length + lumen radius at its tip - lumen radius at its junction, "
             "mm, radii from the Euclidean distance transform) is shorter than the lumen radius at its junction is "
             "pruned as a bump; junctions left with two branches are dissolved.",
    "loops": "cycles are broken by keeping, for every branching point, the widest path from the trachea (whose "
             "narrowest branch, by median lumen radius, is widest; among equally wide paths the shortest in mm); "
             "every branch on no such path is removed and not counted; loops_broken counts them.",
    "trachea": "the free-ended branch with the largest median lumen radius (no orientation assumed), generation 0; "
               "its zone is every voxel nearer to its centreline than to any other tree centreline voxel and "
               "within twice its largest radius plus two voxels.",
    "generation": "number of branching points between a branch and the trachea (main bronchi 1).",
    "BD": f"branches with >= {DETECTION_THRESHOLD:.0%} of their centreline voxels inside the prediction / "
          f"branches of the reference tree.",
    "TD": "tree centreline voxels inside the prediction / all tree centreline voxels (branching points included).",
    "TD_mm": "as TD, each centreline voxel weighted by its physical length (half its edges in the minimum spanning "
             "tree of the centreline voxels, mm).",
    "TPR": "true positive voxels / reference voxels.",
    "FPR": "false positive voxels / background voxels of the whole volume x 100 (hence typically 0.0x).",
    "DSC": "2 |P and R| / (|P| + |R|) over the whole volume, trachea always included.",
    "precision": "true positive voxels / predicted voxels (0 for an empty prediction).",
    "clDice": "harmonic mean of the share of the prediction's skeleton inside the reference and the share of the "
              "reference skeleton inside the prediction (whole volume, trachea included).",
    "BD_by_generation": "BD restricted to the branches of each generation (keys are generations).",
    "branches_reference": "number of reference branches scored by BD; branches_detected: how many were detected.",
    "tree_length_mm": "centreline length scored by TD_mm; detected_length_mm: the detected part.",
    "spurs_pruned": "number of terminal spurs pruned from the reference skeleton.",
    "reference_voxels_outside_largest_component": "reference voxels left out of every metric because they lie "
                                                  "outside the reference's largest connected component (a warning "
                                                  "is printed when a case has any).",
    "n": "number of cases each mean and std is over: cases where the value is defined (not null).",
    "binarisation": "a prediction or reference must hold only 0 and 1 unless --threshold T (prediction airway = "
                    "value > T) or --binarize (airway = value > 0) is given.",
}

PROTOCOL_DEFINITIONS = {
    "paper": "Qin et al. 2020: the trachea branch is excluded from BD, TD and TD_mm, its zone from TPR, FPR and "
             "precision (also from FPR's background); DSC and clDice include it.",
    "atm22": "ATM'22 evaluation: nothing is excluded; the trachea counts as a branch of generation 0.",
}


def definitions(protocol: str) -> dict[str, str]:
    return {"protocol": PROTOCOL_DEFINITIONS[protocol], **DEFINITIONS}


def _mean_std(values: list) -> tuple[float | None, float | None, int]:
    """Mean, population std and count of the values that are not None."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    if present.size == 0:
        return None, None, 0
    return float(present.mean()), float(present.std()), int(present.size)


def summarise(cases: dict[str, dict], protocol: str) -> dict:
    """The summary JSON: {"protocol", "definitions", "cases", "mean", "std", "n"}; ``n`` counts the cases
    each mean is over (null values are left out)."""
    mean: dict = {}
    std: dict = {}
    n: dict = {}
    for name in (*METRIC_NAMES, *COUNT_NAMES):
        mean[name], std[name], n[name] = _mean_std([c.get(name) for c in cases.values()])
    generations = sorted({g for c in cases.values() for g in c["BD_by_generation"]}, key=int)
    mean["BD_by_generation"], std["BD_by_generation"], n["BD_by_generation"] = {}, {}, {}
    for g in generations:
        m, s, k = _mean_std([c["BD_by_generation"].get(g) for c in cases.values()])
        mean["BD_by_generation"][g], std["BD_by_generation"][g], n["BD_by_generation"][g] = m, s, k
    return {"protocol": protocol, "definitions": definitions(protocol), "cases": cases, "mean": mean, "std": std,
            "n": n}


def _plus_minus() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u00b1".encode(encoding)
        return "\u00b1"
    except (UnicodeEncodeError, LookupError):
        return "+-"


def format_table(summary: dict, method: str) -> str:
    """Mean +- std per column, laid out like Table 1 of Qin et al. 2020 (BD, TD, TPR, FPR, DSC; %)."""
    pm = _plus_minus()
    cells = []
    for name in TABLE_COLUMNS:
        m, s = summary["mean"][name], summary["std"][name]
        digits = 3 if name == "FPR" else 1
        cells.append("n/a" if m is None else f"{m:.{digits}f} {pm} {s:.{digits}f}")
    width = max(len(method), len("Method"))
    col = max(14, *(len(c) for c in cells))
    n = len(summary["cases"])
    lines = [
        f"Results (%) on {n} case{'s' if n != 1 else ''} (Mean {pm} Standard deviation), protocol "
        f"{summary['protocol']}",
        "Method".ljust(width) + "".join(name.rjust(col + 2) for name in TABLE_COLUMNS),
        method.ljust(width) + "".join(c.rjust(col + 2) for c in cells),
    ]
    counts = summary.get("n", {})
    fewer = [f"{name} over {counts[name]}" for name in TABLE_COLUMNS if counts.get(name, n) != n]
    if fewer:
        lines.append(f"Means over fewer cases (undefined values left out): {', '.join(fewer)} of {n}")
    return "\n".join(lines)


def cases_csv(summary: dict) -> str:
    """One row per case: the metrics, counts and BD per generation (columns BD_gen<g>)."""
    generations = list(summary["mean"]["BD_by_generation"])
    header = ["case", *METRIC_NAMES, *COUNT_NAMES, *(f"BD_gen{g}" for g in generations)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for case, m in summary["cases"].items():
        row = [case, *(m.get(k) for k in (*METRIC_NAMES, *COUNT_NAMES)),
               *(m["BD_by_generation"].get(g) for g in generations)]
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()
