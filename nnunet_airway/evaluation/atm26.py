"""The ATM'26 Track-1 metrics (MICCAI 2026 challenge, binary airway segmentation) on one case.

Definitions as the organisers' evaluation (Airway-Tree-Modeling-26, ``evaluation/T1_evaluation``) states them,
written here anew; every voxel count is on the label's grid (Z, Y, X):

- DSC = 2 |P & L| / (|P| + |L|) on the *raw* binary prediction P and the label L;
- clDice (Shit et al., CVPR 2021) on the raw prediction: topology sensitivity |P & S_L| / |S_L| with the
  reference skeleton S_L *given*, topology precision |L & S_P| / |S_P| with S_P the Lee skeleton of P,
  their harmonic mean (0 when both are 0);
- TLD (tree length detected) = |P_lcc & S_L| / |S_L|, P_lcc the largest 26-connected component of P;
- BD (branches detected): a branch of the given parsing counts as detected when P_lcc covers at least 80 %
  of its skeleton voxels; BD = detected / total;
- Betti-0 error = | number of 26-connected components of the raw P - 1 |.

The reference skeleton and parsing are given as volumes: branch IDs integers, contiguous from 1, every
skeleton voxel labelled, nothing outside the skeleton (:func:`check_skeleton_and_parsing`). Scores are
returned as fractions; the organisers add 1e-5 to DSC's and TLD's numerator and denominator, which moves
no value by more than 1e-5 of a case with a non-empty label and skeleton.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.components import Components
from nnunet_airway.evaluation.masks import box_offset
from nnunet_airway.evaluation.reference import lee_skeleton
from nnunet_airway.evaluation.skeleton_graph import nonzero_coords

BRANCH_COVERAGE = 0.8  # share of a branch's skeleton voxels the prediction must cover (the 80 % rule)
RATIO_KEYS = ("DSC", "clDice", "TLD", "BD")  # fractions here, percentages in the summary JSON


@dataclass(frozen=True)
class Atm26Scores:
    """The five leaderboard metrics of one case (fractions; Betti0Error a count) and BD's counts."""

    DSC: float
    clDice: float | None
    TLD: float
    BD: float
    Betti0Error: int
    branch_total: int
    branch_detected: int

    def as_percent_dict(self) -> dict:
        """The summary JSON's case entry: the ratios in %, clDice None when it was skipped, counts as int."""
        values = asdict(self)
        for key in RATIO_KEYS:
            if values[key] is not None:
                values[key] = 100.0 * values[key]
        return values


ATM26_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Atm26Scores))


def check_skeleton_and_parsing(skeleton: np.ndarray, parsing: np.ndarray, name: str = "parsing") -> None:
    """DataError naming ``name`` unless the parsing labels exactly the skeleton with IDs 1..N, all used."""
    if skeleton.shape != parsing.shape:
        raise DataError(f"{name}: shape {parsing.shape} differs from the skeleton's {skeleton.shape}; give both on "
                        "the label's grid")
    centreline_ids(skeleton, parsing, name)


def centreline_ids(skeleton: np.ndarray, parsing: np.ndarray, name: str = "parsing") -> tuple[np.ndarray, np.ndarray]:
    """(flat indices (K,) of the skeleton's voxels, their branch IDs (K,) int64) of a skeleton and parsing volume,
    after checking the organisers' rules (DataError naming ``name``). Only the skeleton's voxels are copied."""
    flat = np.flatnonzero(skeleton)
    values = parsing.reshape(-1)[flat]
    if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise DataError(f"{name}: branch IDs must be whole numbers")
    ids = values.astype(np.int64)
    if np.any(ids <= 0):
        raise DataError(f"{name}: {int(np.count_nonzero(ids <= 0))} skeleton voxels carry no branch ID; "
                        "every skeleton voxel needs one (1..N)")
    outside = int(np.count_nonzero(parsing)) - int(np.count_nonzero(values))
    if outside:
        raise DataError(f"{name}: {outside} voxels outside the skeleton carry a branch ID; branch IDs belong on "
                        "the skeleton only")
    used = np.unique(ids)
    if used.size and not np.array_equal(used, np.arange(1, used.size + 1)):
        missing = sorted(set(range(1, int(used.max()) + 1)) - set(used.tolist()))[:5]
        raise DataError(f"{name}: branch IDs must run from 1 without gaps; missing e.g. {missing}")
    return flat, ids


def _detected(covered: np.ndarray, ids: np.ndarray, coverage: float) -> tuple[int, int]:
    """(total, detected) branches: ``covered`` (K,) bool per skeleton voxel, ``ids`` (K,) its branch ID."""
    total = int(ids.max()) if ids.size else 0
    voxels = np.bincount(ids, minlength=total + 1)[1:]
    hits = np.bincount(ids[covered], minlength=total + 1)[1:]
    return total, int(np.count_nonzero(hits >= coverage * voxels))


def branches_detected(prediction: np.ndarray, skeleton: np.ndarray, parsing: np.ndarray,
                      coverage: float = BRANCH_COVERAGE) -> tuple[int, int]:
    """(total, detected) branches of the parsing: detected when ``prediction`` covers >= ``coverage`` of the
    branch's skeleton voxels."""
    flat = np.flatnonzero(skeleton)
    return _detected(prediction.reshape(-1)[flat] > 0, parsing.reshape(-1)[flat].astype(np.int64), coverage)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


class _Prediction:
    """The raw binary prediction with its 26-connected components labelled once: their number, the largest one
    in its own box and (``skeleton``) the Lee skeleton of each component taken in the component's own box.

    Lee's thinning decides on 3x3x3 neighbourhoods, and two 26-connected components never share a foreground
    voxel in one, so the skeleton of each component alone is the skeleton of the whole (and far cheaper when
    fragments lie far apart: the thinning then works on the components' boxes, not on the volume)."""

    def __init__(self, prediction: np.ndarray, skeleton: bool) -> None:
        self.shape = prediction.shape
        self.binary = prediction if prediction.dtype == bool else prediction > 0
        components = Components(self.binary)
        self.components = components.count
        self.voxels = int(components.sizes.sum())
        self.largest, self.largest_box = components.largest(26)
        self.skeleton_flat = np.zeros(0, np.int64)  # the skeleton's voxels: flat indices into the volume
        if skeleton:
            pieces = [self.skeleton_flat]
            for padded, box in components.pieces(pad=1):
                local = nonzero_coords(lee_skeleton(padded)) - 1 + box_offset(box)
                pieces.append(np.ravel_multi_index(tuple(local.T), self.shape))
            self.skeleton_flat = np.concatenate(pieces)
        components.release()

    def covers(self, flat: np.ndarray, largest_only: bool) -> np.ndarray:
        """(K,) bool: the prediction (or its largest component) holds the voxels of volume flat indices."""
        if not largest_only:
            return self.binary.reshape(-1)[flat]
        hit = np.zeros(len(flat), bool)
        if self.largest_box is None or not len(flat):
            return hit
        coords = np.stack(np.unravel_index(flat, self.shape), axis=1)
        lo, hi = box_offset(self.largest_box), np.array([s.stop for s in self.largest_box])
        inside = np.all((coords >= lo) & (coords < hi), axis=1)
        hit[inside] = self.largest[tuple((coords[inside] - lo).T)]
        return hit


def _cl_dice(predicted: _Prediction, label: np.ndarray, sensitivity: float) -> float:
    """clDice from the topology sensitivity and the Lee skeleton of the raw prediction."""
    if not len(predicted.skeleton_flat):
        return 0.0
    inside_label = label.reshape(-1)[predicted.skeleton_flat] > 0
    precision = _share(int(np.count_nonzero(inside_label)), len(predicted.skeleton_flat))
    return float(2 * precision * sensitivity / (precision + sensitivity)) if precision + sensitivity else 0.0


def _overlap(predicted: _Prediction, label: np.ndarray) -> int:
    """|P & L|, from the label's values at the predicted voxels."""
    return int(np.count_nonzero(label[predicted.binary] > 0)) if predicted.voxels else 0


def atm26_scores(prediction: np.ndarray, label: np.ndarray, skeleton: np.ndarray, parsing: np.ndarray,
                 cl_dice: bool = True) -> Atm26Scores:
    """The ATM'26 metrics of one case: binary prediction and label (nonzero = airway), the reference skeleton
    and its parsing, all (Z, Y, X) on one grid. The parsing is checked first (DataError). ``cl_dice=False``
    skips the prediction's skeleton (clDice None)."""
    check_skeleton_and_parsing(skeleton, parsing)
    flat, ids = centreline_ids(skeleton, parsing)
    return atm26_scores_on_centreline(prediction, label, flat, ids, cl_dice)


def atm26_scores_on_centreline(prediction: np.ndarray, label: np.ndarray, centreline: np.ndarray,
                               branch_ids: np.ndarray, cl_dice: bool = True) -> Atm26Scores:
    """:func:`atm26_scores` with the reference skeleton given as the flat indices (K,) of its voxels in the
    (Z, Y, X) volume and ``branch_ids`` (K,) their IDs 1..N (as :func:`centreline_ids` returns them). Every
    whole-volume step works on the prediction's bounding box."""
    if label.shape != prediction.shape:
        raise DataError(f"label: shape {label.shape} differs from the prediction's {prediction.shape}")
    predicted = _Prediction(prediction, skeleton=cl_dice)
    n_centreline = len(centreline)
    sensitivity = _share(int(np.count_nonzero(predicted.covers(centreline, largest_only=False))), n_centreline)
    in_largest = predicted.covers(centreline, largest_only=True)
    total, detected = _detected(in_largest, branch_ids, BRANCH_COVERAGE)
    n_predicted = predicted.voxels
    return Atm26Scores(
        DSC=_share(2 * _overlap(predicted, label), n_predicted + int(np.count_nonzero(label))),
        clDice=_cl_dice(predicted, label, sensitivity) if cl_dice else None,
        TLD=_share(int(np.count_nonzero(in_largest)), n_centreline),
        BD=_share(detected, total),
        Betti0Error=abs(predicted.components - 1),
        branch_total=total,
        branch_detected=detected,
    )
