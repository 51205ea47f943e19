"""The skeleton graph and the tree rules on tiny hand-made skeletons with exact expected outputs."""

from __future__ import annotations

import numpy as np
import pytest

from nnunet_airway.evaluation.skeleton_graph import skeleton_graph
from nnunet_airway.evaluation.tree import MIN_PIECE_VOXELS, build_tree


def _skeleton(shape: tuple[int, int, int], voxels: list[tuple[int, int, int]]) -> np.ndarray:
    volume = np.zeros(shape, dtype=np.uint8)
    volume[tuple(np.array(voxels).T)] = 1
    return volume


def test_straight_line() -> None:
    graph = skeleton_graph(_skeleton((1, 1, 5), [(0, 0, x) for x in range(5)]), (1.0, 1.0, 0.5))
    assert graph.degree.tolist() == [1, 2, 2, 2, 1]
    assert not graph.is_junction.any() and graph.n_parts == 1
    assert graph.length_weight_mm.sum() == pytest.approx(2.0)  # 4 steps of 0.5 mm


def test_diagonal_steps_use_physical_lengths() -> None:
    graph = skeleton_graph(_skeleton((3, 3, 3), [(i, i, i) for i in range(3)]), (2.0, 1.0, 1.0))
    assert len(graph.edges) == 2
    assert graph.edge_length_mm == pytest.approx([np.sqrt(6.0)] * 2)


def test_cross_has_one_junction_cluster_and_four_pieces() -> None:
    arms = [(0, 3, x) for x in range(7)] + [(0, y, 3) for y in range(7) if y != 3]
    graph = skeleton_graph(_skeleton((1, 7, 7), arms), (1.0, 1.0, 1.0))
    centre = graph.coords.tolist().index([0, 3, 3])
    assert graph.degree[centre] == 4
    # the centre's 4 neighbours touch each other diagonally (3 neighbours each): one cluster of 5 voxels
    junctions = graph.coords[graph.is_junction].tolist()
    assert sorted(junctions) == [[0, 2, 3], [0, 3, 2], [0, 3, 3], [0, 3, 4], [0, 4, 3]]
    assert graph.n_parts == 5  # 4 pieces of 2 voxels and the cluster
    assert len(build_tree(graph, np.ones(graph.n_voxels)).branches) == 0  # pieces under 5 voxels only


@pytest.mark.parametrize("side_length,expected_branches,dropped", [(8, 3, 0), (MIN_PIECE_VOXELS - 1, 1, 1)])
def test_t_shape_counts_and_short_pieces(side_length: int, expected_branches: int, dropped: int) -> None:
    stem = [(z, 10, 10) for z in range(12)]  # wide (radius 3): the trachea
    arm = [(11, 10, 10 + k) for k in range(1, 10)]  # continues the stem's end sideways
    side = [(11, 10, 10 - k) for k in range(1, side_length + 1)]
    graph = skeleton_graph(_skeleton((13, 21, 21), stem + arm + side), (1.0, 1.0, 1.0))
    radius = np.where(graph.coords[:, 0] < 11, 3.0, 1.0)
    tree = build_tree(graph, radius)
    assert len(tree.branches) == expected_branches and tree.pieces_dropped == dropped
    assert tree.trachea is not None and 0 in tree.trachea.voxels  # the wide stem's first voxel
    assert [b.generation for b in tree.branches] == [0] + [1] * (expected_branches - 1)


def test_spur_shorter_than_the_lumen_radius_is_pruned() -> None:
    line = [(z, 10, 10) for z in range(30)]
    spur = [(15, 10, 10 + k) for k in range(1, 7)]  # 6 voxels: kept by the 5-voxel rule, not by the spur rule
    graph = skeleton_graph(_skeleton((30, 21, 21), line + spur), (1.0, 1.0, 1.0))
    wide = np.full(graph.n_voxels, 8.0)  # lumen radius 8 mm everywhere: a 6 mm bump is no branch
    tree = build_tree(graph, wide)
    assert tree.spurs_pruned == 1 and len(tree.branches) == 1
    thin = np.full(graph.n_voxels, 2.0)  # radius 2 mm: the same 6 mm piece is a branch
    assert len(build_tree(graph, thin).branches) == 3
