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

import cc3d
import numpy as np

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.masks import bounding_box, largest_component
from nnunet_airway.evaluation.reference import lee_skeleton

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
    on_skeleton = skeleton > 0
    values = parsing[on_skeleton]  # only the skeleton's voxels are copied: a whole-volume int64 would cost 8 B/voxel
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


def branches_detected(prediction: np.ndarray, skeleton: np.ndarray, parsing: np.ndarray,
                      coverage: float = BRANCH_COVERAGE) -> tuple[int, int]:
    """(total, detected) branches of the parsing: detected when ``prediction`` covers >= ``coverage`` of the
    branch's skeleton voxels."""
    on_skeleton = skeleton > 0
    ids = parsing[on_skeleton].astype(np.int64)
    total = int(ids.max()) if ids.size else 0
    voxels = np.bincount(ids, minlength=total + 1)[1:]
    covered = np.bincount(ids[prediction[on_skeleton] > 0], minlength=total + 1)[1:]
    detected = int(np.count_nonzero(covered >= coverage * voxels))
    return total, detected


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _cl_dice(predicted: np.ndarray, reference: np.ndarray, sensitivity: float) -> float:
    """clDice from the topology sensitivity and the Lee skeleton of the raw prediction (in its bounding box)."""
    if not predicted.any():
        return 0.0
    box = bounding_box(predicted, margin=1)
    predicted_skeleton = lee_skeleton(predicted[box]) > 0
    precision = _share(int(np.count_nonzero(reference[box] & predicted_skeleton)),
                       int(np.count_nonzero(predicted_skeleton)))
    return float(2 * precision * sensitivity / (precision + sensitivity)) if precision + sensitivity else 0.0


def atm26_scores(prediction: np.ndarray, label: np.ndarray, skeleton: np.ndarray, parsing: np.ndarray,
                 cl_dice: bool = True) -> Atm26Scores:
    """The ATM'26 metrics of one case: binary prediction and label (nonzero = airway), the reference skeleton
    and its parsing, all (Z, Y, X) on one grid. The parsing is checked first (DataError). ``cl_dice=False``
    skips the prediction's skeleton (clDice None)."""
    check_skeleton_and_parsing(skeleton, parsing)
    for name, volume in (("label", label), ("skeleton", skeleton)):
        if volume.shape != prediction.shape:
            raise DataError(f"{name}: shape {volume.shape} differs from the prediction's {prediction.shape}")
    predicted, reference, centreline = prediction > 0, label > 0, skeleton > 0
    largest = largest_component(predicted, 26)
    n_centreline = int(np.count_nonzero(centreline))
    sensitivity = _share(int(np.count_nonzero(predicted & centreline)), n_centreline)
    topology = _cl_dice(predicted, reference, sensitivity) if cl_dice else None
    total, detected = branches_detected(largest, skeleton, parsing)
    components = int(cc3d.connected_components(predicted.astype(np.uint8), connectivity=26, return_N=True)[1])
    return Atm26Scores(
        DSC=_share(2 * int(np.count_nonzero(predicted & reference)),
                   int(np.count_nonzero(predicted)) + int(np.count_nonzero(reference))),
        clDice=topology,
        TLD=_share(int(np.count_nonzero(largest & centreline)), n_centreline),
        BD=_share(detected, total),
        Betti0Error=abs(components - 1),
        branch_total=total,
        branch_detected=detected,
    )
