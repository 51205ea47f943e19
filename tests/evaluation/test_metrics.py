"""Overlap and detection metrics on hand-built trees with exactly known answers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from nnunet_airway.evaluation import evaluate_case

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]
OVERLAP = ("BD", "TD", "TD_mm", "TPR", "DSC", "precision", "clDice")


@pytest.mark.parametrize("protocol", ["paper", "atm22"])
def test_empty_prediction_scores_zero(airway_case: AirwayCase, protocol: str) -> None:
    reference, spacing = airway_case("three generations")
    metrics = evaluate_case(np.zeros_like(reference), reference, spacing=spacing, protocol=protocol)
    for name in (*OVERLAP, "FPR"):
        assert metrics[name] == 0.0, name
    assert metrics["branches_detected"] == 0
    assert metrics["branches_reference"] == (15 if protocol == "atm22" else 14)
    assert set(metrics["BD_by_generation"].values()) == {0.0}


def test_perfect_prediction_scores_hundred(airway_case: AirwayCase) -> None:
    reference, spacing = airway_case("anisotropic spacing")
    metrics = evaluate_case(reference.copy(), reference, spacing=spacing)
    for name in OVERLAP:
        assert metrics[name] == pytest.approx(100.0), name
    assert metrics["FPR"] == 0.0


def test_missing_child_is_one_undetected_branch(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[:, :, 28:] = 0  # removes the child going to +x beyond the bifurcation region
    paper = evaluate_case(prediction, reference, protocol="paper")
    atm22 = evaluate_case(prediction, reference, protocol="atm22")
    assert (paper["branches_detected"], paper["branches_reference"], paper["BD"]) == (1, 2, 50.0)
    assert (atm22["branches_detected"], atm22["branches_reference"]) == (2, 3)
    assert atm22["BD"] == pytest.approx(200 / 3)
    assert 0 < paper["TD"] < 100 and paper["FPR"] == 0.0 and paper["precision"] == 100.0
    expected_tpr = 100.0 * np.count_nonzero(prediction) / np.count_nonzero(reference)
    assert atm22["TPR"] == pytest.approx(expected_tpr)
    assert paper["TPR"] < atm22["TPR"]  # the (fully found) trachea is left out under the paper protocol


def test_false_positives_and_islands(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    leak = np.zeros_like(reference)
    leak[41:45, 10:14, 38:43] = 1  # touches the +x child's far end
    prediction |= leak
    island = np.zeros_like(reference)
    island[2:5, 2:5, 2:5] = 1  # far from the tree: dropped by the largest-component step
    prediction |= island
    metrics = evaluate_case(prediction, reference, protocol="atm22")
    false_positive = np.count_nonzero(leak & (reference == 0))
    assert false_positive > 0
    background = reference.size - np.count_nonzero(reference)
    assert metrics["FPR"] == pytest.approx(100.0 * false_positive / background)
    n_ref = np.count_nonzero(reference)
    assert metrics["DSC"] == pytest.approx(200.0 * n_ref / (2 * n_ref + false_positive))
    assert metrics["precision"] == pytest.approx(100.0 * n_ref / (n_ref + false_positive))
    assert metrics["TPR"] == 100.0 and metrics["BD"] == 100.0


def test_connectivity_decides_what_the_largest_component_keeps(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    coords = np.argwhere(reference)
    corner = coords[np.argmax(coords.sum(axis=1))]  # no reference voxel has a larger z + y + x
    prediction = reference.copy()
    z, y, x = corner + 1
    prediction[z:z + 3, y:y + 3, x:x + 3] = 1  # a cube touching the tree at one corner only
    background = reference.size - np.count_nonzero(reference)
    six = evaluate_case(prediction, reference, protocol="atm22", connectivity=6)
    twenty_six = evaluate_case(prediction, reference, protocol="atm22", connectivity=26)
    assert six["FPR"] == 0.0
    assert twenty_six["FPR"] == pytest.approx(100.0 * 27 / background)


def test_bad_arguments_are_reported(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    with pytest.raises(ValueError, match="protocol"):
        evaluate_case(reference, reference, protocol="exact09")
    with pytest.raises(ValueError, match="no airway voxels"):
        evaluate_case(reference, np.zeros_like(reference))
    with pytest.raises(ValueError, match="connectivity"):
        evaluate_case(reference, reference, connectivity=8)


def test_paper_protocol_leaves_the_trachea_zone_out(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[8:12, 10:14, 27:31] = 1  # a leak on the trachea's wall (trachea: x = 24, radius 4, z 3-20)
    false_positive = int(np.count_nonzero(prediction & (reference == 0)))
    assert false_positive > 0
    paper = evaluate_case(prediction, reference, protocol="paper")
    atm22 = evaluate_case(prediction, reference, protocol="atm22")
    assert paper["FPR"] == 0.0 and paper["precision"] == 100.0
    assert atm22["FPR"] == pytest.approx(100.0 * false_positive / (reference.size - np.count_nonzero(reference)))
    assert paper["DSC"] == atm22["DSC"] < 100.0
