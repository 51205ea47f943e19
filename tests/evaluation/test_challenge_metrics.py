"""AIIB23, EXACT'09 and topology keys, and ATM'22's TD, on hand-built trees with exactly known answers."""

from __future__ import annotations

from collections.abc import Callable

import cc3d
import numpy as np
import pytest

from nnunet_airway.evaluation import evaluate_case
from nnunet_airway.evaluation.metrics import METRIC_KEYS, CaseMetrics
from nnunet_airway.evaluation.reference import parse_reference
from nnunet_airway.evaluation.report import DEFINITIONS

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]
ISO = (1.0, 1.0, 1.0)


def _with_two_leaks(reference: np.ndarray) -> np.ndarray:
    """The Y tree plus two leaks beyond its children's end caps (children end at z 40, radius 3): 2x2x2 and
    2x3x3 voxels, each touching the tree through one face."""
    prediction = reference.copy()
    prediction[44:46, 11:13, 7:9] = 1
    prediction[44:46, 11:14, 39:42] = 1
    return prediction


def test_every_key_has_a_definition() -> None:
    assert set(METRIC_KEYS) <= set(DEFINITIONS)
    assert METRIC_KEYS[-1] == "BD_by_generation" and len(set(METRIC_KEYS)) == len(METRIC_KEYS)


def test_leaks_of_known_count_and_volume(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = _with_two_leaks(reference)
    n_ref = int(np.count_nonzero(reference))
    assert int(np.count_nonzero(prediction & (reference == 0))) == 8 + 18
    spacing = (2.0, 1.5, 0.5)  # 1.5 mm^3 per voxel
    for protocol in ("paper", "atm22"):
        m = evaluate_case(prediction, reference, spacing=spacing, protocol=protocol)
        assert m["leakage_count"] == 2
        assert m["leakage_volume_mm3"] == pytest.approx(26 * 1.5)
        assert m["FPR_exact09"] == pytest.approx(100.0 * 26 / (n_ref + 26))
        assert m["leakage"] == pytest.approx(100.0 * 26 / n_ref)
        assert m["IoU"] == pytest.approx(100.0 * n_ref / (n_ref + 26))
        assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (1, 0, 0)


def test_leaks_touching_at_a_corner_are_one_leak(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[44, 12, 8] = 1  # touches the end cap (43, 12, 8) through a face
    prediction[45, 13, 9] = 1  # touches the first leak voxel at a corner only
    m = evaluate_case(prediction, reference, protocol="atm22", connectivity=26)
    assert (m["leakage_count"], m["leakage_volume_mm3"]) == (1, 2.0)


def test_perfect_prediction(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    tree = parse_reference(reference, ISO, 6).tree
    children_cm = sum(b.length_mm for b in tree.branches[1:]) / 10.0
    for protocol in ("paper", "atm22"):
        m = evaluate_case(reference.copy(), reference, protocol=protocol)
        assert (m["IoU"], m["DLR"], m["DBR"], m["leakage"]) == (100.0, 100.0, 100.0, 0.0)
        assert (m["branch_count"], m["leakage_count"], m["leakage_volume_mm3"], m["FPR_exact09"]) == (2, 0, 0.0, 0.0)
        assert m["tree_length_cm"] == pytest.approx(children_cm) and children_cm > 3.0
        assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (1, 0, 0)


def test_missing_child(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[:, :, 28:] = 0
    parsed = parse_reference(reference, ISO, 6)
    kept = [b for b in parsed.tree.branches[1:] if parsed.volume_coords(b.voxels)[:, 2].max() < 28]
    assert len(kept) == 1
    skeleton = parsed.volume_coords(np.arange(parsed.skeleton.n_voxels))
    inside = prediction[tuple(skeleton.T)] > 0
    for protocol in ("paper", "atm22"):
        m = evaluate_case(prediction, reference, protocol=protocol)
        assert m["DBR"] == pytest.approx(200.0 / 3.0)  # trachea and one child of three branches
        assert m["DLR"] == pytest.approx(100.0 * inside.mean())  # every voxel of the Lee skeleton
        assert m["branch_count"] == 1
        assert m["tree_length_cm"] == pytest.approx(kept[0].length_mm / 10.0)
        assert (m["leakage_count"], m["leakage"], m["FPR_exact09"]) == (0, 0.0, 0.0)
    atm22 = evaluate_case(prediction, reference, protocol="atm22")
    assert atm22["TD"] == atm22["DLR"]  # the ATM'22 code's TD


def test_atm22_td_counts_skeleton_voxels_the_tree_parse_drops(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("loop")
    parsed = parse_reference(reference, ISO, 6)
    assert parsed.tree.loops_broken == 1
    tree_voxels = parsed.tree.tree_voxels()
    assert tree_voxels.size < parsed.skeleton.n_voxels  # the bridge's centreline is not part of the tree
    prediction = np.zeros_like(reference)
    bridge = parsed.volume_coords(np.setdiff1d(np.arange(parsed.skeleton.n_voxels), tree_voxels))
    prediction[tuple(bridge.T)] = 1  # only the dropped centreline voxels (one 26-connected run)
    m = evaluate_case(prediction, reference, protocol="atm22", connectivity=26)
    assert m["TD"] == pytest.approx(100.0 * len(bridge) / parsed.skeleton.n_voxels)
    assert m["TD_mm"] == 0.0  # TD_mm stays on the parsed tree


def test_loop_of_known_betti_number(airway_case: AirwayCase) -> None:
    y, _ = airway_case("Y")
    looped, _ = airway_case("loop")
    ladder, _ = airway_case("ladder")
    assert parse_reference(looped, ISO, 6).betti == (1, 1, 0)
    assert parse_reference(ladder, ISO, 6).betti == (1, 2, 0)
    m = evaluate_case(looped, y, protocol="atm22")  # the prediction closes a loop the reference lacks
    assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (1, 0, 1)
    rails = ladder.copy()
    rails[30:, :, 17:31] = 0  # cuts both thin rungs (z 34 and 54): no loop left
    m = evaluate_case(ladder, rails, protocol="atm22")
    assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (1, 0, 2)


def test_split_prediction(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[12:14] = 0  # cuts the trachea: two pieces
    island = np.zeros_like(reference)
    island[40:43, 1:4, 44:47] = 1  # and an island far from the tree
    prediction |= island
    m = evaluate_case(prediction, reference, protocol="atm22")
    assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (3, 2, 0)
    largest = cc3d.largest_k(prediction, k=1, connectivity=6) > 0  # the other keys see the largest piece
    tp = int(np.count_nonzero(largest & (reference > 0)))
    union = int(np.count_nonzero(largest | (reference > 0)))
    assert m["IoU"] == pytest.approx(100.0 * tp / union)
    assert m["leakage_count"] == 0 and m["DBR"] == pytest.approx(200.0 / 3.0)  # the trachea is cut off


def test_cavity_in_the_prediction_is_neither_component_nor_tunnel(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    prediction = reference.copy()
    prediction[8, 12, 24] = 0  # a one-voxel hole inside the trachea
    m = evaluate_case(prediction, reference, protocol="paper")
    assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (1, 0, 0)


def test_empty_prediction(airway_case: AirwayCase) -> None:
    reference, _ = airway_case("Y")
    m = evaluate_case(np.zeros_like(reference), reference, protocol="paper")
    assert (m["IoU"], m["DLR"], m["DBR"], m["leakage"], m["FPR_exact09"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert (m["branch_count"], m["tree_length_cm"], m["leakage_count"], m["leakage_volume_mm3"]) == (0, 0.0, 0, 0.0)
    assert (m["components_prediction"], m["betti0_error"], m["betti1_error"]) == (0, 1, 0)


def test_case_metrics_round_trip() -> None:
    values = {k: 0 for k in METRIC_KEYS}
    values["BD_by_generation"] = {"1": 50.0}
    assert CaseMetrics(**values).as_dict() == values
