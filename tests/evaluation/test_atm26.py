"""The ATM'26 Track-1 metrics on hand-built arrays with exact answers, and against the organisers' own code.

ORGANISERS' numbers were produced by running the organisers' metric code (Airway-Tree-Modeling-26,
``evaluation/T1_evaluation/metrics.py`` at commit 3d0ef777, MIT; an unmodified copy in the project's
``shared/reference/atm26_track1``) on the cases of :func:`prediction_for` exactly as their evaluate.py calls it
(BD and TLD on ``keep_largest_component``, the rest on the raw prediction), rounded to 6 digits. Where that copy
lies beside the checkout (the project's CI), it is also run live on the same cases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.atm26 import atm26_scores, branches_detected, check_skeleton_and_parsing

ORACLE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "atm26_track1" / "metrics.py"
ORGANISERS = {
    "whole": {"DSC": 1.0, "clDice": 1.0, "TLD": 1.0, "BD": 1.0, "Betti0Error": 0, "branch_total": 2, "branch_detected": 2},
    "cut": {"DSC": 0.882682, "clDice": 0.882682, "TLD": 0.79, "BD": 0.5, "Betti0Error": 0, "branch_total": 2, "branch_detected": 1},
    "fragment": {"DSC": 0.99889, "clDice": 0.990099, "TLD": 1.0, "BD": 1.0, "Betti0Error": 2, "branch_total": 2, "branch_detected": 2},
    "diagonal": {"DSC": 0.59, "clDice": 0.59, "TLD": 0.59, "BD": 0.5, "Betti0Error": 0, "branch_total": 2, "branch_detected": 1},
    "thick": {"DSC": 0.529412, "clDice": 1.0, "TLD": 1.0, "BD": 1.0, "Betti0Error": 0, "branch_total": 2, "branch_detected": 2},
}


@pytest.fixture(scope="module")
def oracle():
    if not ORACLE.is_file():
        return None
    spec = importlib.util.spec_from_file_location("atm26_reference_metrics", ORACLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def straight_tree() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 3x3 tube along Z (z 1..100) in a 102x9x9 grid; its axis is the skeleton, parsed into branch 1
    (z 1..50) and branch 2 (z 51..100), 50 skeleton voxels each."""
    label = np.zeros((102, 9, 9), np.uint8)
    label[1:101, 3:6, 3:6] = 1
    skeleton = np.zeros_like(label)
    skeleton[1:101, 4, 4] = 1
    parsing = np.zeros(label.shape, np.int16)
    parsing[1:51, 4, 4] = 1
    parsing[51:101, 4, 4] = 2
    return label, skeleton, parsing


@pytest.mark.parametrize(("covered", "detected"), [(39, 1), (40, 2), (41, 2)])
def test_the_80_percent_rule(covered: int, detected: int) -> None:
    """Branch 2 covered on 39, 40 and 41 of its 50 skeleton voxels (78 %, 80 %, 82 %)."""
    label, skeleton, parsing = straight_tree()
    prediction = label.copy()
    prediction[51 + covered:101] = 0
    assert branches_detected(prediction, skeleton, parsing) == (2, detected)
    scores = atm26_scores(prediction, label, skeleton, parsing)
    assert (scores.branch_total, scores.branch_detected, scores.BD) == (2, detected, detected / 2)
    assert scores.TLD == pytest.approx((50 + covered) / 100)


def test_a_fragment_off_the_tree_costs_dsc_and_betti0_but_not_tld_or_bd() -> None:
    label, skeleton, parsing = straight_tree()
    prediction = label.copy()
    prediction[50, 0, 0] = 1  # one voxel, touching nothing
    scores = atm26_scores(prediction, label, skeleton, parsing)
    assert scores.Betti0Error == 1 and scores.TLD == 1.0 and scores.BD == 1.0
    assert scores.DSC == pytest.approx(2 * 900 / (901 + 900))


def test_a_diagonal_contact_joins_under_26_connectivity() -> None:
    """A second piece touching the tube only at a corner is the same 26-connected component: no Betti-0 error,
    and its skeleton voxels count for TLD."""
    label, skeleton, parsing = straight_tree()
    prediction = label.copy()
    prediction[60:101] = 0
    prediction[60:101, 6:9, 6:9] = 1  # corner (59, 5, 5) - (60, 6, 6): diagonal contact only
    scores = atm26_scores(prediction, label, skeleton, parsing)
    assert scores.Betti0Error == 0
    assert scores.TLD == pytest.approx(59 / 100)  # the shifted piece covers no skeleton voxel


def test_parsings_that_break_the_rules_are_refused_naming_the_rule() -> None:
    label, skeleton, parsing = straight_tree()
    gap = parsing.copy()
    gap[gap == 2] = 3
    with pytest.raises(DataError, match="without gaps"):
        check_skeleton_and_parsing(skeleton, gap)
    unlabelled = parsing.copy()
    unlabelled[10, 4, 4] = 0
    with pytest.raises(DataError, match="1 skeleton voxels carry no branch ID"):
        check_skeleton_and_parsing(skeleton, unlabelled)
    outside = parsing.copy()
    outside[0, 0, 0] = 1
    with pytest.raises(DataError, match="outside the skeleton"):
        check_skeleton_and_parsing(skeleton, outside)
    with pytest.raises(DataError, match="shape"):
        check_skeleton_and_parsing(skeleton, parsing[:-1])


def _oracle_scores(oracle, prediction, label, skeleton, parsing) -> dict[str, float]:
    largest = oracle.keep_largest_component(prediction)
    total, detected, ratio = oracle.branch_detected(largest, parsing, skeleton, threshold=0.8)
    return {"DSC": oracle.dice_coefficient(prediction, label), "clDice": oracle.cl_dice(prediction, label, skeleton),
            "TLD": oracle.tree_length_detected(largest, skeleton), "BD": ratio,
            "Betti0Error": oracle.betti0_error(prediction), "branch_total": total, "branch_detected": detected}


def prediction_for(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(prediction, label, skeleton, parsing) of one of the ORGANISERS cases on the straight tree."""
    label, skeleton, parsing = straight_tree()
    prediction = label.copy()
    if case == "cut":
        prediction[80:101] = 0
    elif case == "fragment":
        prediction[50, 0, 0] = 1
        prediction[20, 8, 8] = 1
    elif case == "diagonal":
        prediction[60:101] = 0
        prediction[60:101, 6:9, 6:9] = 1
    elif case == "thick":
        prediction[1:101, 2:7, 2:7] = 1
    return prediction, label, skeleton, parsing


@pytest.mark.parametrize("case", list(ORGANISERS))
def test_the_same_numbers_as_the_organisers_code(oracle, case: str) -> None:
    volumes = prediction_for(case)
    ours = atm26_scores(*volumes)
    expected = [ORGANISERS[case]] + ([_oracle_scores(oracle, *volumes)] if oracle is not None else [])
    for theirs in expected:
        for name, value in theirs.items():
            assert getattr(ours, name) == pytest.approx(value, abs=1e-4), name


TREES = ORACLE.parents[2] / "data" / "atm22_trees"
# The organisers' code (as in _oracle_scores) on real ATM'22 trees of case ATM_224 (512 x 512 x 682, 0.537 x 0.537
# x 0.5 mm): one team's tree as the label, another's as the prediction, the label's skeleton and parsing written by
# our parse (evaluation/parsing.py, as `nnunet-airway parse` writes them); rounded to 6 digits.
ORGANISERS_ON_REAL_TREES = {
    ("timi", "YangLab"): {"DSC": 0.931875, "clDice": 0.855923, "TLD": 0.911165, "BD": 0.815217, "Betti0Error": 0,
                          "branch_total": 368, "branch_detected": 300},
}


@pytest.mark.slow
@pytest.mark.skipif(not TREES.is_dir(), reason=f"{TREES} not found (shared data beside the clone)")
@pytest.mark.parametrize(("label_team", "prediction_team"), list(ORGANISERS_ON_REAL_TREES))
def test_real_trees_give_the_organisers_numbers(oracle, label_team: str, prediction_team: str) -> None:
    from nnunet_airway.evaluation.parsing import parse_label
    from nnunet_airway.image_io import read_image

    label, geometry = read_image(TREES / f"ATM_224_{label_team}.nii.gz")
    prediction, _ = read_image(TREES / f"ATM_224_{prediction_team}.nii.gz")
    label, prediction = label > 0, prediction > 0
    skeleton, parsing = parse_label(label, geometry.spacing_zyx)
    check_skeleton_and_parsing(skeleton, parsing)
    ours = atm26_scores(prediction, label, skeleton, parsing)
    expected = [ORGANISERS_ON_REAL_TREES[label_team, prediction_team]]
    if oracle is not None:
        expected.append(_oracle_scores(oracle, prediction, label, skeleton, parsing))
    for theirs in expected:
        for name, value in theirs.items():
            assert getattr(ours, name) == pytest.approx(value, abs=1e-4), name
