"""Comparison statistics on tiny hand-built numbers."""

from __future__ import annotations

import math

import pytest

from nnunet_airway.evaluation.comparison import (
    bd_by_generation,
    bootstrap_ci,
    mean_std,
    paired_difference,
    paired_differences,
)


def test_mean_and_population_std_skip_undefined_values() -> None:
    assert mean_std([1.0, 2.0, 3.0, None]) == (2.0, math.sqrt(2 / 3))
    assert mean_std([None]) == (None, None)


def test_bd_per_absolute_generation_averages_the_cases_that_have_it() -> None:
    cases = {"a": {"BD_by_generation": {"3": None, "1": 100.0, "2": 50.0}},
             "b": {"BD_by_generation": {"2": 0.0, "7": 25.0}},
             "c": {}}
    assert bd_by_generation(cases) == {1: 100.0, 2: 25.0, 7: 25.0}
    assert list(bd_by_generation(cases)) == [1, 2, 7]


def test_bootstrap_of_equal_differences_is_that_value() -> None:
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert bootstrap_ci([5.0]) == (5.0, 5.0)


def test_bootstrap_of_two_values_spans_them() -> None:
    # resampled means are 0, 2 or 4 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% quantiles are 0 and 4
    assert bootstrap_ci([0.0, 4.0]) == (0.0, 4.0)
    assert bootstrap_ci([0.0, 4.0], confidence=0.4) == (2.0, 2.0)


def test_bootstrap_is_repeatable_and_checks_its_input() -> None:
    values = [1.0, -3.0, 4.0, 0.5, 2.0]
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    low, high = bootstrap_ci(values)
    assert -3.0 < low < sum(values) / 5 < high < 4.0
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0], confidence=95)


def test_paired_difference_pairs_cases_by_name() -> None:
    row = {"a": {"BD": 80.0}, "b": {"BD": 60.0}, "c": {"BD": None}}
    reference = {"a": {"BD": 70.0}, "b": {"BD": 60.0}, "c": {"BD": 10.0}, "d": {"BD": 10.0}}
    difference = paired_difference("FR", row, "Baseline", reference, "BD")
    assert (difference.cases, difference.mean, difference.low, difference.high) == (2, 5.0, 0.0, 10.0)
    assert not difference.excludes_zero  # the interval touches zero
    assert difference.as_dict()["excludes_zero"] is False
    assert paired_difference("FR", row, "Baseline", {"x": {"BD": 1.0}}, "BD") is None


def test_intervals_on_one_side_of_zero_exclude_it() -> None:
    rows = {"Baseline": {"a": {"BD": 50.0, "DSC": 80.0}, "b": {"BD": 40.0, "DSC": 80.0}},
            "FR": {"a": {"BD": 53.0, "DSC": 79.0}, "b": {"BD": 45.0, "DSC": 79.0}}}
    found = paired_differences(rows, ["nnU-Net default", "Baseline"], ["BD", "DSC"])
    assert [(d.row, d.reference, d.metric) for d in found] == [("FR", "Baseline", "BD"), ("FR", "Baseline", "DSC")]
    bd, dsc = found
    assert (bd.mean, bd.low, bd.high, bd.excludes_zero) == (4.0, 3.0, 5.0, True)
    assert (dsc.mean, dsc.low, dsc.high, dsc.excludes_zero) == (-1.0, -1.0, -1.0, True)
