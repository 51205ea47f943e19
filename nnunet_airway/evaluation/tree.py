"""From a skeleton graph to an airway tree: branches, their parents and generations.

Rules (applied in this order; every count is reported):
1. Pieces (runs of non-junction skeleton voxels) under ``MIN_PIECE_VOXELS`` voxels are not branches:
   a free-ended or isolated one is dropped, one between two junction clusters is merged into them
   (the two junctions become one branching point), as the ATM'22 code drops them.
2. Only the connected part of the skeleton holding the most voxels is kept.
3. Cycles are broken by keeping, for every branching point, the widest path from the trachea (the path
   whose narrowest branch, by median lumen radius, is widest; among equally wide paths the shortest in
   mm): every branch on no such path is removed. Each removed branch is one loop broken; it is neither a
   branch nor tree length. The trachea (rule 6) is found first; it cannot lie on a cycle.
4. Terminal spurs are pruned: a free-ended branch whose protrusion beyond its parent's lumen,
   ``length + r_tip - r_junction``, is shorter than the lumen radius at its junction ``r_junction`` is a
   bump on a wide tube, not a branch. Shortest protrusions first; a junction is never pruned below 2 branches.
5. Junctions left with two branches are dissolved (the two branches become one).
6. The trachea is the free-ended branch with the largest median lumen radius (no orientation assumed);
   generations count branching points from it (trachea 0, main bronchi 1, ...).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from nnunet_airway.evaluation.skeleton_graph import SkeletonGraph

MIN_PIECE_VOXELS = 5


@dataclass(frozen=True)
class Branch:
    """One airway branch: skeleton voxels (rows of SkeletonGraph.coords) between two branching points or ends."""

    id: int
    voxels: np.ndarray
    parent: int | None
    generation: int
    length_mm: float
    radius_mm: float


@dataclass(frozen=True)
class AirwayTree:
    """The parsed tree. ``branches[0]`` is the trachea (the root) when there is any branch."""

    branches: list[Branch]
    junction_voxels: np.ndarray
    loops_broken: int
    spurs_pruned: int
    pieces_dropped: int

    @property
    def trachea(self) -> Branch | None:
        return self.branches[0] if self.branches else None

    def tree_voxels(self) -> np.ndarray:
        """All skeleton voxels of the tree (branches and branching points)."""
        parts = [b.voxels for b in self.branches] + [self.junction_voxels]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class _Node:
    voxels: list[np.ndarray] = field(default_factory=list)
    tip: int | None = None  # leaves (free ends) only: the end voxel
    edges: list[int] = field(default_factory=list)  # incident edge ids; a self-loop appears twice

    @property
    def is_leaf(self) -> bool:
        return self.tip is not None


@dataclass
class _Edge:
    voxels: list[np.ndarray]
    ends: list[int]
    n_piece_voxels: int


class _TreeBuilder:
    """A small multigraph: junction clusters and free ends as nodes, pieces as edges."""

    def __init__(self, graph: SkeletonGraph, radius_mm: np.ndarray) -> None:
        self.graph = graph
        self.radius = radius_mm
        self.nodes: dict[int, _Node] = {}
        self.edges: dict[int, _Edge] = {}
        self._next_node = graph.n_parts
        self._build()

    # -- construction -------------------------------------------------------------------------------
    def _build(self) -> None:
        g = self.graph
        order = np.argsort(g.part, kind="stable")
        bounds = np.searchsorted(g.part[order], np.arange(g.n_parts + 1))
        members = [order[bounds[p]:bounds[p + 1]] for p in range(g.n_parts)]
        part_is_junction = np.zeros(g.n_parts, dtype=bool)
        part_is_junction[g.part[g.is_junction]] = True
        for p in np.flatnonzero(part_is_junction):
            self.nodes[int(p)] = _Node(voxels=[members[p]])
        a, b = g.edges[:, 0], g.edges[:, 1]
        cross = g.is_junction[a] != g.is_junction[b]
        piece_voxel = np.where(g.is_junction[a[cross]], b[cross], a[cross])
        cluster = g.part[np.where(g.is_junction[a[cross]], a[cross], b[cross])]
        attachments: dict[int, list[tuple[int, int]]] = {}
        for voxel, c in zip(piece_voxel.tolist(), cluster.tolist(), strict=True):
            attachments.setdefault(int(g.part[voxel]), []).append((voxel, c))
        cross_count = np.bincount(piece_voxel, minlength=g.n_voxels)
        for p in np.flatnonzero(~part_is_junction):
            voxels = members[p]
            attached = attachments.get(int(p), [])
            ends = [c for _, c in attached]
            in_piece_degree = g.degree[voxels] - cross_count[voxels]
            tips = [int(v) for v in voxels[(in_piece_degree <= 1) & (cross_count[voxels] == 0)]]
            tips += [int(voxels[0])] * 2  # a one-voxel piece is both ends; a ring has no end voxel
            ends = ends[:2] + [self._new_leaf(tips[i]) for i in range(2 - len(ends[:2]))]
            self.edges[int(p)] = _Edge(voxels=[voxels], ends=ends, n_piece_voxels=len(voxels))
            for end in ends:
                self.nodes[end].edges.append(int(p))

    def _new_leaf(self, tip: int) -> int:
        node_id = self._next_node
        self._next_node += 1
        self.nodes[node_id] = _Node(tip=tip)
        return node_id

    # -- measurements -------------------------------------------------------------------------------
    def edge_voxels(self, e: int) -> np.ndarray:
        return np.concatenate(self.edges[e].voxels)

    def edge_radius(self, e: int) -> float:
        return float(np.median(self.radius[self.edge_voxels(e)]))

    def edge_length(self, e: int) -> float:
        return float(self.graph.length_weight_mm[self.edge_voxels(e)].sum())

    def node_radius(self, n: int) -> float:
        node = self.nodes[n]
        if node.is_leaf:
            return float(self.radius[node.tip])
        return float(self.radius[np.concatenate(node.voxels)].max())

    def degree(self, n: int) -> int:
        return len(self.nodes[n].edges)

    def other_end(self, e: int, n: int) -> int:
        a, b = self.edges[e].ends
        return b if a == n else a

    # -- edits --------------------------------------------------------------------------------------
    def remove_edge(self, e: int) -> None:
        edge = self.edges.pop(e)
        for end in edge.ends:
            node = self.nodes[end]
            node.edges.remove(e)
            if node.is_leaf and not node.edges:
                del self.nodes[end]

    def contract_edge(self, e: int) -> None:
        """Merge edge ``e`` and its two end nodes (both junction clusters) into one node."""
        edge = self.edges.pop(e)
        u, v = edge.ends
        keep = self.nodes[u]
        keep.edges.remove(e)
        keep.voxels.extend(edge.voxels)
        if v == u:
            keep.edges.remove(e)
            return
        gone = self.nodes.pop(v)
        gone.edges.remove(e)
        keep.voxels.extend(gone.voxels)
        for other in gone.edges:
            self.edges[other].ends = [u if end == v else end for end in self.edges[other].ends]
            keep.edges.append(other)

    def dissolve(self, n: int) -> None:
        """Join the two different edges at a junction node of degree 2 into one edge."""
        node = self.nodes.pop(n)
        first, second = node.edges
        keep, gone = self.edges[first], self.edges.pop(second)
        far = [end for end in gone.ends if end != n] or [n]
        keep.voxels.extend(node.voxels)
        keep.voxels.extend(gone.voxels)
        keep.ends = [far[0] if end == n else end for end in keep.ends]
        far_node = self.nodes[far[0]]
        far_node.edges = [first if x == second else x for x in far_node.edges]
        keep.n_piece_voxels += gone.n_piece_voxels

    def simplify(self) -> None:
        """Dissolve degree-2 junctions; a junction left with one branch becomes that branch's free end."""
        for n in list(self.nodes):
            node = self.nodes.get(n)
            if node is None or node.is_leaf:
                continue
            if len(node.edges) == 2 and node.edges[0] != node.edges[1]:
                self.dissolve(n)
            elif len(node.edges) == 1:
                voxels = np.concatenate(node.voxels)
                self.edges[node.edges[0]].voxels.extend(node.voxels)
                node.voxels = []
                node.tip = int(voxels[np.argmin(self.radius[voxels])])
            elif not node.edges:
                del self.nodes[n]

    # -- the rules ----------------------------------------------------------------------------------
    def drop_short_pieces(self) -> int:
        dropped = 0
        for e in [e for e, edge in self.edges.items() if edge.n_piece_voxels < MIN_PIECE_VOXELS]:
            u, v = self.edges[e].ends
            if self.nodes[u].is_leaf or self.nodes[v].is_leaf:
                self.remove_edge(e)
            else:
                self.contract_edge(e)
            dropped += 1
        return dropped

    def keep_largest_part(self) -> None:
        seen: set[int] = set()
        best: tuple[int, set[int]] = (-1, set())
        for start in list(self.nodes):
            if start in seen:
                continue
            group, queue = {start}, deque([start])
            while queue:
                n = queue.popleft()
                for e in self.nodes[n].edges:
                    m = self.other_end(e, n)
                    if m not in group:
                        group.add(m)
                        queue.append(m)
            seen |= group
            size = sum(len(np.concatenate(self.nodes[n].voxels)) if self.nodes[n].voxels else 0 for n in group)
            size += sum(self.edges[e].n_piece_voxels for n in group for e in set(self.nodes[n].edges))
            if size > best[0]:
                best = (size, group)
        for n in [n for n in self.nodes if n not in best[1]]:
            for e in list(self.nodes[n].edges):
                if e in self.edges:
                    self.edges.pop(e)
            del self.nodes[n]

    def _edge_key(self, e: int) -> tuple[float, float, int]:
        """Sort key of the widest (then longest) edge first; rounded so ties do not hinge on float noise."""
        return (-round(self.edge_radius(e), 6), -round(self.edge_length(e), 6), e)

    def root_leaf(self) -> int | None:
        """The free end of the widest free-ended branch (the trachea's top); None without branches."""
        terminal = [e for e, edge in self.edges.items() if any(self.nodes[n].is_leaf for n in edge.ends)]
        if not terminal:
            return None
        ends = self.edges[min(terminal, key=self._edge_key)].ends
        return ends[0] if self.nodes[ends[0]].is_leaf else ends[1]

    def break_cycles(self) -> int:
        """Keep, for every node, the widest path from the root (the path whose narrowest branch is widest;
        among equally wide paths the shortest in mm); remove every other branch. Returns how many."""
        root = self.root_leaf()
        if root is None:
            if not self.edges:
                return 0
            root = self.edges[min(self.edges, key=self._edge_key)].ends[0]
        width = {e: round(self.edge_radius(e), 6) for e in self.edges}
        length = {e: self.edge_length(e) for e in self.edges}
        best: dict[int, tuple[float, float]] = {root: (-np.inf, 0.0)}  # (-bottleneck width, path length)
        via: dict[int, int] = {}
        heap = [(-np.inf, 0.0, root)]
        done: set[int] = set()
        while heap:
            neg_width, path_length, n = heapq.heappop(heap)
            if n in done:
                continue
            done.add(n)
            for e in sorted(set(self.nodes[n].edges)):
                m = self.other_end(e, n)
                if m in done:
                    continue
                key = (max(neg_width, -width[e]), path_length + length[e])
                if m not in best or key < best[m]:
                    best[m], via[m] = key, e
                    heapq.heappush(heap, (*key, m))
        removed = [e for e in self.edges if e not in set(via.values())]
        for e in removed:
            self.remove_edge(e)
        return len(removed)

    def prune_spurs(self) -> int:
        pruned = 0
        while True:
            candidates = []
            for e, edge in self.edges.items():
                leaf_ends = [n for n in edge.ends if self.nodes[n].is_leaf]
                if len(leaf_ends) != 1:
                    continue
                junction = self.other_end(e, leaf_ends[0])
                r_junction = self.node_radius(junction)
                protrusion = self.edge_length(e) + self.node_radius(leaf_ends[0]) - r_junction
                if protrusion < r_junction:
                    candidates.append((protrusion, e, junction))
            removed_now = 0
            for _, e, junction in sorted(candidates):
                if e in self.edges and junction in self.nodes and self.degree(junction) >= 3:
                    self.remove_edge(e)
                    removed_now += 1
            self.simplify()
            pruned += removed_now
            if not removed_now:
                return pruned

    def to_tree(self, loops_broken: int, spurs_pruned: int, pieces_dropped: int) -> AirwayTree:
        junction_voxels = [np.concatenate(n.voxels) for n in self.nodes.values() if not n.is_leaf and n.voxels]
        junction_array = np.concatenate(junction_voxels) if junction_voxels else np.zeros(0, dtype=np.int64)
        branches: list[Branch] = []
        root_node = self.root_leaf()
        if root_node is not None:
            root_edge = self.nodes[root_node].edges[0]
            ids: dict[int, int] = {}
            queue = deque([(root_edge, root_node, None, 0)])
            while queue:
                e, came_from, parent_id, generation = queue.popleft()
                if e in ids:
                    continue
                ids[e] = len(branches)
                branches.append(Branch(
                    id=ids[e], voxels=self.edge_voxels(e), parent=parent_id, generation=generation,
                    length_mm=self.edge_length(e), radius_mm=self.edge_radius(e),
                ))
                far = self.other_end(e, came_from)
                for child in self.nodes[far].edges:
                    if child != e and child not in ids:
                        queue.append((child, far, ids[e], generation + 1))
        return AirwayTree(branches=branches, junction_voxels=junction_array.astype(np.int64),
                          loops_broken=loops_broken, spurs_pruned=spurs_pruned, pieces_dropped=pieces_dropped)


def build_tree(graph: SkeletonGraph, radius_mm: np.ndarray) -> AirwayTree:
    """Parse a skeleton graph into an airway tree (rules in the module docstring).

    radius_mm: (N,) lumen radius at each skeleton voxel (distance transform of the mask, mm).
    """
    if radius_mm.shape != (graph.n_voxels,):
        raise ValueError(f"radius_mm must have one value per skeleton voxel ({graph.n_voxels}), got {radius_mm.shape}")
    builder = _TreeBuilder(graph, radius_mm)
    pieces_dropped = builder.drop_short_pieces()
    builder.keep_largest_part()
    loops_broken = builder.break_cycles()
    builder.simplify()
    spurs_pruned = builder.prune_spurs()
    return builder.to_tree(loops_broken, spurs_pruned, pieces_dropped)
