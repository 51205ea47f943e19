"""The summary: definitions of every number, mean and std over cases, the console table and the CSV."""

from __future__ import annotations

import csv
import io
import sys
from typing import Literal, get_args

import numpy as np

from nnunet_airway.evaluation.atm26 import ATM26_KEYS, BRANCH_COVERAGE
from nnunet_airway.evaluation.metrics import DETECTION_THRESHOLD, LEAKAGE_CONNECTIVITY, SCALAR_KEYS, Protocol
from nnunet_airway.evaluation.tree import MIN_PIECE_VOXELS

# per-generation BD dicts of a case: from the reference's root; absolute (trachea = 0), with phantom truth
GENERATION_KEYS: tuple[str, ...] = ("BD_by_generation", "BD_by_absolute_generation")

Table = Literal["paper", "atm22", "aiib23", "exact09", "atm26"]
TABLES: tuple[Table, ...] = get_args(Table)
# the console layouts: (key, column title); the JSON and the CSV always hold every key
TABLE_COLUMNS: dict[Table, tuple[tuple[str, str], ...]] = {
    "paper": (("BD", "BD"), ("TD", "TD"), ("TPR", "TPR"), ("FPR", "FPR"), ("DSC", "DSC")),
    "atm22": (("TD", "TD"), ("BD", "BD"), ("DSC", "DSC"), ("precision", "Precision"), ("TPR", "Sensitivity"),
              ("FPR", "FPR")),
    "aiib23": (("IoU", "IoU"), ("DLR", "DLR"), ("DBR", "DBR"), ("precision", "Precision"), ("leakage", "Leakage")),
    "exact09": (("branch_count", "Branch count"), ("tree_length_cm", "Tree length cm"),
                ("leakage_count", "Leakage count"), ("leakage_volume_mm3", "Leakage mm3"),
                ("FPR_exact09", "FPR")),
    "atm26": (("DSC", "DSC"), ("clDice", "clDice"), ("TLD", "TLD"), ("BD", "BD"), ("Betti0Error", "Betti-0 error")),
}
# the tables each protocol's summary can fill (the atm26 summary holds the ATM'26 keys only)
PROTOCOL_TABLES: dict[str, tuple[Table, ...]] = {"paper": ("paper", "atm22", "aiib23", "exact09"),
                                                 "atm22": ("paper", "atm22", "aiib23", "exact09"),
                                                 "atm26": ("atm26",)}
TABLE_TITLES: dict[Table, str] = {
    "paper": "Results (%)",
    "atm22": "Results (%), ATM'22 leaderboard metrics",
    "aiib23": "Results (%), AIIB23 metrics",
    "exact09": "Results, EXACT'09 metrics (lengths cm, volumes mm3, FPR %)",
    "atm26": "Results (%), ATM'26 Track-1 leaderboard metrics (Betti-0 error a count)",
}
THREE_DIGITS = ("FPR",)

DEFINITIONS: dict[str, str] = {
    "units": "BD, TD, TD_mm, TPR, FPR, DSC, precision, clDice, IoU, DLR, DBR, leakage, FPR_exact09 and "
             "BD_by_generation are percentages; lengths in mm or cm, volumes in mm^3, counts are integers; "
             "null means undefined (empty denominator). std is the population standard deviation over cases.",
    "sources": "ATM'22: EndoluminalSurgicalVision-IMR/ATM-22-Related-Work, evaluation/evaluation_atm_22.py (Zhang "
               "et al., Med. Image Anal. 2023); AIIB23: ayanglab/AIIB, 'scoring metrics/task1.py' (Nan et al., "
               "AIIB23 challenge 2023); EXACT'09: Lo et al., IEEE TMI 31(11):2093-2107, 2012; the paper protocol: "
               "Qin et al. 2020; clDice: Shit et al., CVPR 2021. Details: docs/metrics.md.",
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
    "TD": "paper protocol: tree centreline voxels inside the prediction / all tree centreline voxels (branching "
          "points included, the trachea and branches removed by the tree parse excluded); atm22 protocol: as the "
          "ATM'22 code, every voxel of the reference's Lee skeleton (same as DLR).",
    "TD_mm": "as TD, each centreline voxel weighted by its physical length (half its edges in the minimum spanning "
             "tree of the centreline voxels, mm).",
    "TPR": "true positive voxels / reference voxels.",
    "FPR": "false positive voxels / background voxels of the whole volume x 100 (hence typically 0.0x).",
    "DSC": "2 |P and R| / (|P| + |R|) over the whole volume, trachea always included.",
    "precision": "true positive voxels / predicted voxels (0 for an empty prediction).",
    "clDice": "harmonic mean of the share of the prediction's skeleton inside the reference and the share of the "
              "reference skeleton inside the prediction (whole volume, trachea included).",
    "BD_by_generation": "BD restricted to the branches of each generation (keys are generations, counted from "
                        "the reference's root: the trachea, or the branch entering a crop).",
    "BD_by_absolute_generation": "with --truth (phantoms only): BD per absolute generation (trachea = 0) of the "
                                 "phantom's truth sidecar, each parsed branch matched to the sidecar branch most of "
                                 "its centreline lies nearest to.",
    "branches_reference": "number of reference branches scored by BD; branches_detected: how many were detected.",
    "tree_length_mm": "centreline length scored by TD_mm; detected_length_mm: the detected part.",
    "spurs_pruned": "number of terminal spurs pruned from the reference skeleton.",
    "reference_voxels_outside_largest_component": "reference voxels left out of every metric because they lie "
                                                  "outside the reference's largest connected component (a warning "
                                                  "is printed when a case has any).",
    "n": "number of cases each mean and std is over: cases where the value is defined (not null).",
    "binarisation": "a prediction or reference must hold only 0 and 1 unless --threshold T (prediction airway = "
                    "value > T) or --binarize (airway = value > 0) is given.",
    "branches_detected": "number of reference branches scored by BD that are detected.",
    "detected_length_mm": "the part of tree_length_mm inside the prediction.",
    "loops_broken": "number of reference branches removed to break cycles (see loops).",
    "IoU": "AIIB23: |P and R| / |P or R| over the whole volume (Jaccard index), every protocol.",
    "DLR": "AIIB23 detected length ratio: voxels of the reference's Lee skeleton inside the prediction / all its "
           "voxels, every protocol (the ATM'22 TD).",
    "DBR": f"AIIB23 detected branch ratio: detected branches (>= {DETECTION_THRESHOLD:.0%} of centreline voxels "
           f"inside the prediction) / all branches of the reference tree, trachea included, every protocol.",
    "leakage": "AIIB23: false positive voxels / reference voxels, whole volume, every protocol.",
    "branch_count": "EXACT'09: number of detected reference branches, trachea excluded, every protocol.",
    "tree_length_cm": "EXACT'09: summed centreline length of the detected reference branches (cm), trachea and "
                      "branching points excluded, every protocol.",
    "leakage_count": f"EXACT'09: number of leaks, the {LEAKAGE_CONNECTIVITY}-connected components of the false "
                     f"positive voxels (prediction outside the reference), whole volume.",
    "leakage_volume_mm3": "EXACT'09: volume of all false positive voxels (mm^3), whole volume.",
    "FPR_exact09": "EXACT'09 false positive rate: leakage volume / volume of the prediction x 100 (0 for an empty "
                   "prediction); not the ATM'22 FPR, whose denominator is the background.",
    "components_prediction": "26-connected components of the prediction as given (before the largest-component "
                             "step): its Betti number b0.",
    "betti0_error": "|b0(prediction) - b0(reference)|, both as given (before the largest-component step), "
                    "26-connected foreground.",
    "betti1_error": "|b1(prediction) - b1(reference)|, both as given, 26-connected foreground and 6-connected "
                    "background: b1 = b0 + b2 - Euler characteristic (from local 2x2x2 configurations), b2 = "
                    "background components not reaching the volume's border (cavities).",
}

PROTOCOL_DEFINITIONS = {
    "paper": "Qin et al. 2020: the trachea branch is excluded from BD, TD and TD_mm, its zone from TPR, FPR and "
             "precision (also from FPR's background); DSC and clDice include it.",
    "atm22": "ATM'22 evaluation: nothing is excluded; the trachea counts as a branch of generation 0.",
    "atm26": "ATM'26 Track 1: DSC, clDice and Betti-0 error on the raw prediction, TLD and BD on its largest "
             "26-connected component, against the given (or computed) reference skeleton and parsing; the "
             "leaderboard ranks by the mean of the rank positions on the five (nnunet-airway rank).",
}


ATM26_DEFINITIONS: dict[str, str] = {
    "units": "DSC, clDice, TLD and BD are percentages; Betti0Error, branch_total and branch_detected are counts; "
             "null means skipped (clDice with --no-cldice). std is the population standard deviation over cases.",
    "sources": "ATM'26 Track 1 (MICCAI 2026), the organisers' evaluation code: EndoluminalSurgicalVision-IMR/"
               "Airway-Tree-Modeling-26, evaluation/T1_evaluation/metrics.py and evaluate.py (MIT); clDice: Shit et "
               "al., CVPR 2021. Details: docs/metrics.md.",
    "skeleton": "the reference skeleton and branch parsing as given (--parsing: CASE_skeleton.nii.gz, "
                "CASE_parsing.nii.gz) or, without them, our tree parse of the reference's largest 26-connected "
                "component (nnunet-airway parse writes the same volumes).",
    "DSC": "2 |P and L| / (|P| + |L|) on the raw binary prediction P and the label L.",
    "clDice": "harmonic mean of topology precision (the raw prediction's Lee skeleton inside the label) and topology "
              "sensitivity (the given reference skeleton inside the raw prediction).",
    "TLD": "tree length detected: reference skeleton voxels inside the prediction's largest 26-connected component "
           "/ all reference skeleton voxels.",
    "BD": f"branches detected: branches of the parsing with >= {BRANCH_COVERAGE:.0%} of their skeleton voxels inside "
          f"the prediction's largest 26-connected component / all branches of the parsing.",
    "Betti0Error": "| 26-connected components of the raw prediction - 1 |.",
    "branch_total": "branches of the parsing; branch_detected: how many BD counts as detected.",
    "n": "number of cases each mean and std is over: cases where the value is defined (not null).",
}


def definitions(protocol: Protocol) -> dict[str, str]:
    if protocol == "atm26":
        return {"protocol": PROTOCOL_DEFINITIONS[protocol], **ATM26_DEFINITIONS}
    return {"protocol": PROTOCOL_DEFINITIONS[protocol], **DEFINITIONS}


def scalar_keys(protocol: Protocol) -> tuple[str, ...]:
    """The per-case scalar keys of a protocol's summary."""
    return ATM26_KEYS if protocol == "atm26" else SCALAR_KEYS


def _mean_std(values: list) -> tuple[float | None, float | None, int]:
    """Mean, population std and count of the values that are not None."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    if present.size == 0:
        return None, None, 0
    return float(present.mean()), float(present.std()), int(present.size)


def summarise(cases: dict[str, dict], protocol: Protocol) -> dict:
    """The summary JSON: {"protocol", "definitions", "cases", "mean", "std", "n"} (cases: CaseMetrics.as_dict());
    ``n`` counts the cases each mean is over (null values are left out)."""
    mean: dict = {}
    std: dict = {}
    n: dict = {}
    for name in scalar_keys(protocol):
        mean[name], std[name], n[name] = _mean_std([c.get(name) for c in cases.values()])
    for key in GENERATION_KEYS if protocol != "atm26" else ():
        if key != "BD_by_generation" and not any(key in c for c in cases.values()):
            continue
        generations = sorted({g for c in cases.values() for g in (c.get(key) or {})}, key=int)
        mean[key], std[key], n[key] = {}, {}, {}
        for g in generations:
            m, s, k = _mean_std([(c.get(key) or {}).get(g) for c in cases.values()])
            mean[key][g], std[key][g], n[key][g] = m, s, k
    return {"protocol": protocol, "definitions": definitions(protocol), "cases": cases, "mean": mean, "std": std,
            "n": n}


def _plus_minus() -> str:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "\u00b1".encode(encoding)
        return "\u00b1"
    except (UnicodeEncodeError, LookupError):
        return "+-"


def check_table(table: str) -> Table:
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    return table  # type: ignore[return-value]


def format_table(summary: dict, method: str, table: Table = "paper") -> str:
    """Mean +- std per column in the layout ``table`` ("paper": BD, TD, TPR, FPR, DSC as Table 1 of Qin et
    al. 2020; "atm22", "aiib23", "exact09": those challenges' metrics)."""
    columns = TABLE_COLUMNS[check_table(table)]
    protocol = summary["protocol"]
    if table not in PROTOCOL_TABLES.get(protocol, TABLES):
        raise ValueError(f"table {table} needs the metrics of another protocol than {protocol}; with protocol "
                         f"{protocol} choose one of {PROTOCOL_TABLES[protocol]}")
    pm = _plus_minus()
    cells = []
    for name, _ in columns:
        m, s = summary["mean"][name], summary["std"][name]
        digits = 3 if name in THREE_DIGITS else 1
        cells.append("n/a" if m is None else f"{m:.{digits}f} {pm} {s:.{digits}f}")
    width = max(len(method), len("Method"))
    col = max(14, *(len(c) for c in cells), *(len(title) for _, title in columns))
    n = len(summary["cases"])
    lines = [
        f"{TABLE_TITLES[table]} on {n} case{'s' if n != 1 else ''} (Mean {pm} Standard deviation), protocol "
        f"{summary['protocol']}",
        "Method".ljust(width) + "".join(title.rjust(col + 2) for _, title in columns),
        method.ljust(width) + "".join(c.rjust(col + 2) for c in cells),
    ]
    counts = summary.get("n", {})
    fewer = [f"{name} over {counts[name]}" for name, _ in columns if counts.get(name, n) != n]
    if fewer:
        lines.append(f"Means over fewer cases (undefined values left out): {', '.join(fewer)} of {n}")
    return "\n".join(lines)


def cases_csv(summary: dict) -> str:
    """One row per case: every key of CaseMetrics and BD per generation (columns BD_gen<g>; with phantom truth
    also BD_absgen<g>, absolute generations)."""
    generations = list(summary["mean"].get("BD_by_generation") or {})
    absolute = list(summary["mean"].get("BD_by_absolute_generation") or {})
    keys = scalar_keys(summary["protocol"])
    header = ["case", *keys, *(f"BD_gen{g}" for g in generations), *(f"BD_absgen{g}" for g in absolute)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for case, m in summary["cases"].items():
        row = [case, *(m.get(k) for k in keys),
               *((m.get("BD_by_generation") or {}).get(g) for g in generations),
               *((m.get("BD_by_absolute_generation") or {}).get(g) for g in absolute)]
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()
