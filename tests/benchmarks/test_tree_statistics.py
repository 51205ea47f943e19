"""benchmarks/tree_statistics.py: its per-generation statistics and lobar depths on hand-built trees."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tree_statistics.py"


@pytest.fixture(scope="module")
def stats():
    spec = importlib.util.spec_from_file_location("tree_statistics_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(id_: int, parent: int | None, generation: int, radius: float = 1.0, length: float = 6.0,
           angle: float | None = 30.0) -> dict:
    return {"id": id_, "parent": parent, "generation": generation, "radius_mm": radius, "length_mm": length,
            "length_to_diameter": length / (2 * radius), "angle_deg": angle}


def tree() -> list[dict]:
    # trachea 0 -> main bronchi 1, 2 -> lobar 3, 4 (under 1) and 5 (under 2) -> 3 has children 6, 7 -> 6 has 8, 9
    return [record(0, None, 0, 8.0, 100.0, None), record(1, 0, 1, 5.0), record(2, 0, 1, 4.0),
            record(3, 1, 2), record(4, 1, 2), record(5, 2, 2), record(6, 3, 3, 0.5, 4.0, 20.0),
            record(7, 3, 3, 0.5, 2.0, 40.0), record(8, 6, 4), record(9, 6, 4)]


def test_lobar_depth_is_the_deepest_generation_below_each_generation_2_branch(stats) -> None:
    assert stats.lobar_depths(tree()) == [2, 2, 4]


def test_per_generation_counts_per_tree_and_takes_quartiles(stats) -> None:
    found = stats.per_generation([tree(), tree()[:6]])
    assert found[2]["branches_per_tree"] == 3.0
    assert found[3]["branches_per_tree"] == 1.0  # two branches in the first tree, none in the second
    assert found[3]["length_mm"] == [2.5, 3.0, 3.5]
    assert found[3]["length_to_diameter"] == [2.5, 3.0, 3.5]
    assert found[3]["angle_deg"] == [25.0, 30.0, 35.0]
    assert found[0]["angle_deg"] is None


def test_branch_ends_lie_on_its_principal_axis(stats) -> None:
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.1, 0.0], [2.0, -0.1, 0.0], [3.0, 0.0, 0.0]])
    ends = sorted(map(tuple, stats._ends(points)))
    assert ends == [(0.0, 0.0, 0.0), (3.0, 0.0, 0.0)]
    assert stats._angle(np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0])) == pytest.approx(45.0)
