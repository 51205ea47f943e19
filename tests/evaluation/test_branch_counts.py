"""Branch counts on hand-built tubes whose number of branches is known exactly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from nnunet_airway.evaluation import evaluate_case

AirwayCase = Callable[[str], tuple[np.ndarray, tuple[float, float, float]]]

# (case, branches under atm22 = the whole tree including the trachea)
CASES = [
    ("tube", 1), ("Y", 3), ("three generations", 15), ("four generations", 31), ("anisotropic spacing", 15),
    ("flipped axes", 15), ("transposed axes", 15), ("truncated trachea", 3), ("spurs", 3), ("island", 3),
    ("loop", 3),
]


@pytest.mark.parametrize("name,expected", CASES, ids=[c[0] for c in CASES])
def test_perfect_prediction_counts_every_branch_once(airway_case: AirwayCase, name: str, expected: int) -> None:
    volume, spacing = airway_case(name)
    atm22 = evaluate_case(volume, volume, spacing=spacing, protocol="atm22")
    paper = evaluate_case(volume, volume, spacing=spacing, protocol="paper")
    assert atm22["branches_reference"] == expected
    assert paper["branches_reference"] == expected - 1  # the trachea is not scored
    assert atm22["branches_detected"] == expected
    for metrics in (atm22, paper):
        assert metrics["FPR"] == 0.0
        assert metrics["DSC"] == pytest.approx(100.0)
    assert atm22["BD"] == atm22["TD"] == 100.0
    assert atm22["TPR"] == pytest.approx(100.0)
    if expected > 1:
        assert paper["BD"] == paper["TD"] == 100.0
        assert paper["TPR"] == pytest.approx(100.0)
    else:  # a lone tube is all trachea: nothing is left to score once the trachea is excluded
        assert paper["BD"] is None and paper["TD"] is None and paper["TPR"] is None


def test_spurs_are_pruned_not_counted(airway_case: AirwayCase) -> None:
    volume, spacing = airway_case("spurs")
    metrics = evaluate_case(volume, volume, spacing=spacing, protocol="atm22")
    assert metrics["spurs_pruned"] >= 1
    assert metrics["branches_reference"] == 3


def test_loop_is_broken_once_and_reported(airway_case: AirwayCase) -> None:
    volume, spacing = airway_case("loop")
    metrics = evaluate_case(volume, volume, spacing=spacing, protocol="atm22")
    assert metrics["loops_broken"] == 1
    assert metrics["branches_reference"] == 3
    y, _ = airway_case("Y")
    assert evaluate_case(y, y, protocol="atm22")["loops_broken"] == 0


def test_two_cycles_keep_the_widest_paths(airway_case: AirwayCase) -> None:
    # the ladder's graph: trachea, top rung halves to the middle junctions, middle rung, and the path
    # rail-bottom rung-rail; the two cycles lose their narrowest members (middle rung, bottom path),
    # leaving the trachea and two branches down the rails
    volume, spacing = airway_case("ladder")
    metrics = evaluate_case(volume, volume, spacing=spacing, protocol="atm22")
    assert metrics["loops_broken"] == 2
    assert metrics["branches_reference"] == 3
    assert metrics["BD"] == 100.0


def test_generations_are_counted_from_the_trachea(airway_case: AirwayCase) -> None:
    volume, spacing = airway_case("three generations")
    by_generation = evaluate_case(volume, volume, spacing=spacing, protocol="atm22")["BD_by_generation"]
    assert list(by_generation) == ["0", "1", "2", "3"]
    paper = evaluate_case(volume, volume, spacing=spacing, protocol="paper")["BD_by_generation"]
    assert list(paper) == ["1", "2", "3"]
