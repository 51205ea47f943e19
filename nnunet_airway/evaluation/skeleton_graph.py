"""A skeleton as a sparse voxel graph: 26-neighbour edges, junction voxels, pieces and junction clusters.

Everything is computed from the skeleton's voxel list (N voxels, N << volume size): neighbours are
found by binary search in the sorted linear indices, never by whole-volume passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

# the 13 "forward" offsets of the 26-neighbourhood; with their negatives they give all 26
FORWARD_OFFSETS = np.array(
    [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)],
    dtype=np.int64,
)

JUNCTION_MIN_NEIGHBOURS = 3


@dataclass(frozen=True)
class SkeletonGraph:
    """Skeleton voxels and their 26-neighbour adjacency.

    coords: (N, 3) int64 voxel indices (Z, Y, X), in lexicographic order.
    edges: (E, 2) int64 pairs of voxel indices (rows of ``coords``) that are 26-neighbours, i < j.
    edge_length_mm: (E,) float64 physical distance between the two voxel centres.
    degree: (N,) number of 26-neighbours in the skeleton.
    is_junction: (N,) bool, degree >= 3 (the ATM'22 definition).
    part: (N,) int64: id of the voxel's *part*; a part is either a piece (a maximal connected run of
        non-junction voxels) or a junction cluster (a maximal connected set of junction voxels).
    n_parts: number of parts.
    length_weight_mm: (N,) each voxel's share of centreline length: half the summed lengths of its edges
        in the minimum spanning tree of the voxel graph (so clusters of mutually adjacent voxels at
        junctions are not counted several times).
    """

    coords: np.ndarray
    edges: np.ndarray
    edge_length_mm: np.ndarray
    degree: np.ndarray
    is_junction: np.ndarray
    part: np.ndarray
    n_parts: int
    length_weight_mm: np.ndarray

    @property
    def n_voxels(self) -> int:
        return int(self.coords.shape[0])


def nonzero_coords(volume: np.ndarray) -> np.ndarray:
    """(K, 3) int64 indices of the nonzero voxels in lexicographic order (cheaper than np.argwhere)."""
    flat = np.flatnonzero(volume)
    return np.stack(np.unravel_index(flat, volume.shape), axis=1).astype(np.int64, copy=False)


def neighbour_pairs(coords: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(E, 2) index pairs i < j of 26-neighbouring voxels among ``coords`` ((N, 3), lexicographically sorted)."""
    if coords.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.int64)
    linear = np.ravel_multi_index(tuple(coords.T), shape)
    pairs = []
    for offset in FORWARD_OFFSETS:
        moved = coords + offset
        inside = np.all((moved >= 0) & (moved < np.asarray(shape)), axis=1)
        source = np.flatnonzero(inside)
        target_linear = np.ravel_multi_index(tuple(moved[source].T), shape)
        pos = np.minimum(np.searchsorted(linear, target_linear), linear.size - 1)
        hit = linear[pos] == target_linear
        pairs.append(np.stack([source[hit], pos[hit]], axis=1))
    result = np.concatenate(pairs)
    return np.sort(result, axis=1)


def _components(n: int, edges: np.ndarray) -> tuple[int, np.ndarray]:
    graph = sparse.coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)


def skeleton_graph(skeleton: np.ndarray, spacing_zyx: tuple[float, float, float]) -> SkeletonGraph:
    """Build the graph of a binary skeleton ((Z, Y, X) array, any dtype; nonzero = skeleton)."""
    coords = nonzero_coords(skeleton)
    n = coords.shape[0]
    edges = neighbour_pairs(coords, skeleton.shape)
    steps = (coords[edges[:, 1]] - coords[edges[:, 0]]) * np.asarray(spacing_zyx, dtype=np.float64)
    edge_length = np.sqrt((steps**2).sum(axis=1))
    degree = np.bincount(edges.ravel(), minlength=n).astype(np.int64)
    is_junction = degree >= JUNCTION_MIN_NEIGHBOURS
    same_kind = is_junction[edges[:, 0]] == is_junction[edges[:, 1]]
    n_parts, part = _components(n, edges[same_kind])
    weight = np.zeros(n, dtype=np.float64)
    if len(edges):
        graph = sparse.coo_matrix((edge_length, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
        tree = csgraph.minimum_spanning_tree(graph).tocoo()
        np.add.at(weight, tree.row, 0.5 * tree.data)
        np.add.at(weight, tree.col, 0.5 * tree.data)
    return SkeletonGraph(
        coords=coords, edges=edges, edge_length_mm=edge_length, degree=degree, is_junction=is_junction,
        part=part.astype(np.int64), n_parts=int(n_parts), length_weight_mm=weight,
    )
