"""Statistics for comparing trainers on the same held-out cases: mean +- std, BD per generation, and paired
per-case differences with percentile-bootstrap confidence intervals.

Inputs are per-case metric dicts as in the evaluation summary's ``cases`` (a metric may be None: undefined),
keyed by a case name that is the same for every trainer scored on that case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Cases = Mapping[str, Mapping]  # case name -> that case's metrics


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation (as the evaluation summary) of the values that are not None;
    (None, None) when there are none."""
    present = np.array([v for v in values if v is not None], dtype=float)
    if present.size == 0:
        return None, None
    return float(present.mean()), float(present.std())


def metric_values(cases: Cases, metric: str) -> dict[str, float]:
    """case -> value of ``metric``, leaving out the cases where it is None or missing."""
    return {name: float(case[metric]) for name, case in cases.items() if case.get(metric) is not None}


def bd_by_generation(cases: Cases) -> dict[int, float]:
    """Mean BD (%) per absolute airway generation over the cases that have branches of that generation
    (their ``BD_by_generation`` is keyed by generation, as a string in JSON), sorted by generation."""
    values: dict[int, list[float]] = {}
    for case in cases.values():
        for generation, value in (case.get("BD_by_generation") or {}).items():
            if value is not None:
                values.setdefault(int(generation), []).append(float(value))
    return {generation: float(np.mean(v)) for generation, v in sorted(values.items())}


def bootstrap_ci(differences: Sequence[float], confidence: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``differences``: resample the values with replacement
    ``resamples`` times (numpy's default_rng(seed)), take the mean of each, return the (1-c)/2 and (1+c)/2
    quantiles of those means (numpy's linear interpolation)."""
    values = np.asarray(differences, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one difference")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """``row`` minus ``reference`` in ``metric`` over the cases both have: mean and bootstrap interval."""

    row: str
    reference: str
    metric: str
    cases: int
    mean: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def paired_difference(row: str, row_cases: Cases, reference: str, reference_cases: Cases, metric: str,
                      confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> PairedDifference | None:
    """Per-case ``row - reference`` over the cases where both have ``metric``; None when there are none."""
    a, b = metric_values(row_cases, metric), metric_values(reference_cases, metric)
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    differences = [a[name] - b[name] for name in common]
    low, high = bootstrap_ci(differences, confidence, resamples, seed)
    return PairedDifference(row, reference, metric, len(common), float(np.mean(differences)), low, high)


def paired_differences(rows: Mapping[str, Cases], references: Sequence[str], metrics: Sequence[str],
                       confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> list[PairedDifference]:
    """Every row against every reference present in ``rows`` (not itself), per metric, in the given orders."""
    found = []
    for reference in references:
        if reference not in rows:
            continue
        for row, cases in rows.items():
            if row == reference:
                continue
            for metric in metrics:
                difference = paired_difference(row, cases, reference, rows[reference], metric, confidence,
                                               resamples, seed)
                if difference is not None:
                    found.append(difference)
    return found
