"""Scoring one prediction against a parsed reference: the metric families of ATM'22 (BD, TD, TPR, FPR,
DSC, precision), AIIB23 (IoU, DLR, DBR, leakage), EXACT'09 (branch count, tree length, leakage count and
volume, its FPR), clDice and topology (components, Betti-number errors).

Ratios are percentages. A ratio with an empty denominator (e.g. BD when the paper protocol leaves no
branch besides the trachea) is None; an empty prediction scores 0 on every overlap metric.
Definitions of every key: ``nnunet_airway.evaluation.report.DEFINITIONS`` and docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

import cc3d
import numpy as np

from nnunet_airway.evaluation.components import Components
from nnunet_airway.evaluation.masks import Box, bounding_box, box_offset, paste, union_box
from nnunet_airway.evaluation.reference import ParsedReference, lee_skeleton
from nnunet_airway.evaluation.skeleton_graph import nonzero_coords
from nnunet_airway.evaluation.topology import betti_numbers

Protocol = Literal["paper", "atm22", "atm26"]
PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
TREE_PROTOCOLS: tuple[Protocol, ...] = ("paper", "atm22")  # scored here; atm26 by evaluation.atm26.atm26_scores
DETECTION_THRESHOLD = 0.8  # a branch is detected when this share of its centreline voxels is predicted
LEAKAGE_CONNECTIVITY = 26  # false-positive voxels touching at a corner are one leak (EXACT'09 leakage count)


@dataclass(frozen=True)
class CaseMetrics:
    """Every number of one case (the summary JSON's ``cases`` entries; definitions in report.DEFINITIONS).

    Ratios in %, lengths in mm or cm, volumes in mm^3, counts as int; None where undefined.
    """

    # ATM'22 / Qin et al. 2020 (the protocol decides what is excluded)
    BD: float | None
    TD: float | None
    TD_mm: float | None
    TPR: float | None
    FPR: float | None
    DSC: float | None
    precision: float | None
    clDice: float | None
    # AIIB23 (nothing excluded)
    IoU: float | None
    DLR: float | None
    DBR: float | None
    leakage: float | None
    # EXACT'09 (trachea excluded from branch count and tree length)
    branch_count: int
    tree_length_cm: float
    leakage_count: int
    leakage_volume_mm3: float
    FPR_exact09: float
    # topology of the prediction as given (26-connected)
    components_prediction: int
    betti0_error: int
    betti1_error: int
    # counts behind the ratios
    branches_reference: int
    branches_detected: int
    tree_length_mm: float
    detected_length_mm: float
    loops_broken: int
    spurs_pruned: int
    reference_voxels_outside_largest_component: int
    BD_by_generation: dict[str, float | None]

    def as_dict(self) -> dict:
        return asdict(self)


SCALAR_KEYS: tuple[str, ...] = tuple(f.name for f in fields(CaseMetrics) if f.name != "BD_by_generation")
METRIC_KEYS: tuple[str, ...] = (*SCALAR_KEYS, "BD_by_generation")


@dataclass(frozen=True)
class CaseScore:
    """The metrics of one case and what a picture of it needs.

    branch_detected: (B,) bool per reference branch (``reference.tree.branches`` order).
    branch_counted: (B,) bool, False for the trachea under the paper protocol.
    false_positive_coords: (K, 3) volume coordinates (Z, Y, X) of predicted voxels outside the reference
        (only filled when asked for, else shape (0, 3)).
    """

    metrics: CaseMetrics
    reference: ParsedReference
    branch_detected: np.ndarray
    branch_counted: np.ndarray
    false_positive_coords: np.ndarray
    volume_shape: tuple[int, int, int]
    spacing_zyx: tuple[float, float, float]


def percent(numerator: float, denominator: float) -> float | None:
    """100 * numerator / denominator, None when the denominator is 0."""
    return None if denominator == 0 else 100.0 * float(numerator) / float(denominator)


def check_protocol(protocol: str) -> Protocol:
    """``protocol`` as a :data:`Protocol`; ValueError for any other name (the one place names are checked)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return protocol  # type: ignore[return-value]


def _intersection(a: Box, b: Box) -> Box | None:
    box = tuple(slice(max(sa.start, sb.start), min(sa.stop, sb.stop)) for sa, sb in zip(a, b, strict=True))
    return None if any(s.stop <= s.start for s in box) else box  # type: ignore[return-value]


def _relative(box: Box, to: Box) -> Box:
    return tuple(slice(s.start - t.start, s.stop - t.start) for s, t in zip(box, to, strict=True))  # type: ignore[return-value]


def score_case(
    reference: ParsedReference, prediction: np.ndarray, spacing_zyx: tuple[float, float, float],
    protocol: Protocol = "paper", connectivity: int = 6, keep_false_positives: bool = False, cl_dice: bool = True,
) -> CaseScore:
    """Score a prediction ((Z, Y, X), nonzero = airway, same grid as the reference) against ``reference``.

    The topology keys see the prediction as given; every other key its largest ``connectivity``-connected
    component. ``cl_dice=False`` skips the prediction's skeleton (timings in docs/benchmarks.md); clDice is
    then None. ``protocol``: one of :data:`TREE_PROTOCOLS` (ValueError for atm26, which atm26_scores scores).
    """
    protocol = check_protocol(protocol)
    if protocol not in TREE_PROTOCOLS:
        raise ValueError(f"score_case scores the protocols {TREE_PROTOCOLS}; {protocol} is scored by "
                         f"nnunet_airway.evaluation.atm26.atm26_scores")
    volume_shape = tuple(int(n) for n in prediction.shape)
    components = Components(prediction)  # labelled once for the topology keys and the largest component
    betti_pred = betti_numbers(components)
    pred_mask, pred_box = components.largest(connectivity, margin=1)
    del components
    work = union_box(reference.box, pred_box)
    ref_w = paste(reference.mask, reference.box, work)
    pred_w = paste(pred_mask, pred_box, work)
    del pred_mask
    n_ref, n_pred = int(ref_w.sum()), int(pred_w.sum())
    tp = int(np.count_nonzero(ref_w & pred_w))
    total = int(np.prod(volume_shape))

    # the trachea zone, excluded from TPR, FPR and precision under the paper protocol
    zone_ref = zone_tp = zone_pred = zone_all = 0
    if protocol == "paper" and reference.trachea_zone is not None:
        zone = reference.trachea_zone
        zone_all = int(zone.sum())
        shared = _intersection(reference.trachea_box, work)
        if shared is not None:
            z = zone[_relative(shared, reference.trachea_box)]
            r = ref_w[_relative(shared, work)] & z
            p = pred_w[_relative(shared, work)] & z
            zone_ref, zone_pred, zone_tp = int(r.sum()), int(p.sum()), int(np.count_nonzero(r & p))
    tp_e, ref_e, pred_e = tp - zone_tp, n_ref - zone_ref, n_pred - zone_pred
    false_pos = pred_e - tp_e
    background = total - n_ref - (zone_all - zone_ref)

    # centreline detection
    skeleton = reference.skeleton
    in_work = skeleton.coords + box_offset(reference.box) - box_offset(work)
    centre_hit = pred_w[tuple(in_work.T)] if skeleton.n_voxels else np.zeros(0, dtype=bool)
    tree = reference.tree
    branches = tree.branches
    detected = np.array([centre_hit[b.voxels].mean() >= DETECTION_THRESHOLD for b in branches], dtype=bool)
    not_trachea = np.ones(len(branches), dtype=bool)
    not_trachea[:1] = False
    counted = not_trachea if protocol == "paper" else np.ones(len(branches), dtype=bool)
    length_voxels = tree.tree_voxels()
    if protocol == "paper" and branches:
        length_voxels = np.setdiff1d(length_voxels, branches[0].voxels)
    weights = skeleton.length_weight_mm[length_voxels]
    hits = centre_hit[length_voxels]
    skeleton_detected = percent(int(centre_hit.sum()), centre_hit.size)  # every voxel of the Lee skeleton

    by_generation: dict[str, float | None] = {}
    generations = np.array([b.generation for b in branches], dtype=np.int64)
    for g in sorted(set(generations[counted].tolist())):
        in_g = counted & (generations == g)
        by_generation[str(g)] = percent(int((detected & in_g).sum()), int(in_g.sum()))

    # leaks: false-positive voxels of the (largest-component) prediction, whole volume
    n_leak = n_pred - tp
    leak_w = pred_w & ~ref_w if n_leak else None
    leakage_count = 0
    if leak_w is not None:
        _, leakage_count = cc3d.connected_components(leak_w.view(np.uint8), connectivity=LEAKAGE_CONNECTIVITY, binary_image=True,
                                                     return_N=True)
    voxel_mm3 = float(np.prod(np.asarray(spacing_zyx, dtype=np.float64)))
    exact_detected = detected & not_trachea
    ref_b0, ref_b1, _ = reference.betti

    metrics = CaseMetrics(
        BD=percent(int((detected & counted).sum()), int(counted.sum())),
        TD=skeleton_detected if protocol == "atm22" else percent(int(hits.sum()), hits.size),
        TD_mm=percent(float(weights[hits].sum()), float(weights.sum())),
        TPR=percent(tp_e, ref_e),
        FPR=percent(false_pos, background),
        DSC=percent(2 * tp, n_ref + n_pred),
        precision=percent(tp_e, pred_e) if pred_e else 0.0,
        clDice=_cl_dice(ref_w, pred_w, centre_hit) if cl_dice else None,
        IoU=percent(tp, n_ref + n_pred - tp),
        DLR=skeleton_detected,
        DBR=percent(int(detected.sum()), len(branches)),
        leakage=percent(n_leak, n_ref),
        branch_count=int(exact_detected.sum()),
        tree_length_cm=float(sum(b.length_mm for b, hit in zip(branches, exact_detected, strict=True) if hit)) / 10.0,
        leakage_count=int(leakage_count),
        leakage_volume_mm3=n_leak * voxel_mm3,
        FPR_exact09=percent(n_leak, n_pred) if n_pred else 0.0,  # type: ignore[arg-type]
        components_prediction=betti_pred[0],
        betti0_error=abs(betti_pred[0] - ref_b0),
        betti1_error=abs(betti_pred[1] - ref_b1),
        branches_reference=int(counted.sum()),
        branches_detected=int((detected & counted).sum()),
        BD_by_generation=by_generation,
        tree_length_mm=float(weights.sum()),
        detected_length_mm=float(weights[hits].sum()),
        loops_broken=tree.loops_broken,
        spurs_pruned=tree.spurs_pruned,
        reference_voxels_outside_largest_component=reference.voxels_outside,
    )
    fp_coords = np.zeros((0, 3), dtype=np.int64)
    if keep_false_positives and leak_w is not None:
        fp_coords = nonzero_coords(leak_w) + box_offset(work)
    return CaseScore(metrics=metrics, reference=reference, branch_detected=detected, branch_counted=counted,
                     false_positive_coords=fp_coords, volume_shape=volume_shape,  # type: ignore[arg-type]
                     spacing_zyx=tuple(spacing_zyx))  # type: ignore[arg-type]


def _cl_dice(ref_w: np.ndarray, pred_w: np.ndarray, centre_hit: np.ndarray) -> float:
    """clDice (Shit et al. 2021): harmonic mean of the share of the predicted skeleton inside the reference
    (topology precision) and the share of the reference skeleton inside the prediction (topology sensitivity).

    Whole skeletons are used (no trachea exclusion), as for DSC."""
    if not pred_w.any() or centre_hit.size == 0:
        return 0.0
    box = bounding_box(pred_w, margin=1)
    pred_skeleton = lee_skeleton(pred_w[box]).view(bool)
    n_skeleton = np.count_nonzero(pred_skeleton)
    precision = np.count_nonzero(pred_skeleton & ref_w[box]) / n_skeleton if n_skeleton else 0.0
    sensitivity = float(centre_hit.mean())
    if precision + sensitivity == 0:
        return 0.0
    return float(100.0 * 2 * precision * sensitivity / (precision + sensitivity))
