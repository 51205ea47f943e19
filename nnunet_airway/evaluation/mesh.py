"""A scored case as a coloured surface mesh: reference branches detected (green) or missed (red), trachea and
branching points grey, false-positive prediction blue; written as binary PLY (3D Slicer, ParaView, MeshLab).

The surface is the marching-cubes isosurface (scikit-image, Lewiner) of the reference airway (largest
component, holes filled) together with the predicted voxels more than FP_MARGIN_VOXELS outside it, on a grid padded by one empty voxel,
so it is closed. Each reference voxel takes the colour of its nearest centreline voxel; each vertex the
colour of its nearest solid voxel. Vertices are then Taubin-smoothed (no staircase, no shrinking).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from skimage.measure import marching_cubes

from nnunet_airway.evaluation.masks import box_offset
from nnunet_airway.evaluation.metrics import CaseScore
from nnunet_airway.image_io import Geometry
from nnunet_airway.writing import write_bytes

# label codes of the colour volume (0 = empty) and their RGB colours (those of evaluation/render.py)
DETECTED, MISSED, FALSE_POSITIVE, NOT_SCORED = 1, 2, 3, 4
COLOURS = np.array([(0, 0, 0), (0x1A, 0x98, 0x50), (0xD7, 0x30, 0x27), (0x45, 0x75, 0xB4), (0x9A, 0x9A, 0x9A)],
                   dtype=np.uint8)
SMOOTHING_ITERATIONS = 10
FP_MARGIN_VOXELS = 1  # false-positive voxels within this distance (6-connected) of the reference are not drawn
LABEL_NAMES = {DETECTED: "detected branch", MISSED: "missed branch", FALSE_POSITIVE: "false positive",
               NOT_SCORED: "trachea / branching points"}


@dataclass(frozen=True)
class SurfaceMesh:
    """vertices: (V, 3) float32 physical (x, y, z) mm (ITK/LPS, as the image's geometry places them);
    faces: (F, 3) int32 vertex indices; labels: (V,) uint8 label codes; colours: (V, 3) uint8 RGB."""

    vertices: np.ndarray
    faces: np.ndarray
    labels: np.ndarray

    @property
    def colours(self) -> np.ndarray:
        return COLOURS[self.labels]


def colour_volume(score: CaseScore) -> tuple[np.ndarray, np.ndarray]:
    """Label codes over the reference box grown to hold the false positives, padded by one empty voxel.

    Returns (labels uint8 (Z, Y, X), offset (3,) int: volume index of labels[0, 0, 0]).
    """
    ref = score.reference
    ref_start = box_offset(ref.box)
    ref_stop = ref_start + np.asarray(ref.mask.shape)
    fp = np.asarray(score.false_positive_coords, dtype=np.int64).reshape(-1, 3)
    low, high = ref_start, ref_stop
    if len(fp):
        low, high = np.minimum(low, fp.min(axis=0)), np.maximum(high, fp.max(axis=0) + 1)
    offset = low - 1
    shape = tuple(int(n) for n in high - low + 2)

    # seeds: every centreline voxel with its branch's label (junctions and unassigned voxels: not scored)
    seeds = np.zeros(shape, dtype=np.uint8)
    centreline = ref.skeleton.coords + ref_start - offset
    seed_labels = np.full(len(centreline), NOT_SCORED, dtype=np.uint8)
    for branch, detected, counted in zip(ref.tree.branches, score.branch_detected, score.branch_counted,
                                         strict=True):
        seed_labels[branch.voxels] = NOT_SCORED if not counted else DETECTED if detected else MISSED
    if len(centreline):
        seeds[tuple(centreline.T)] = seed_labels
    solid = np.zeros(shape, dtype=bool)
    inner = tuple(slice(int(a), int(a) + n) for a, n in zip(ref_start - offset, ref.mask.shape, strict=True))
    solid[inner] = ref.mask
    labels = np.zeros(shape, dtype=np.uint8)
    if seeds.any():
        nearest = ndimage.distance_transform_edt(seeds == 0, sampling=score.spacing_zyx, return_distances=False,
                                                 return_indices=True)
        labels[solid] = seeds[tuple(index[solid] for index in nearest)]
    else:
        labels[solid] = NOT_SCORED
    if len(fp):
        # a prediction a voxel wider than the label is a matter of DSC, not a false branch: it would hide the
        # reference's colours under a thin blue skin, so only voxels beyond that margin are drawn
        near = ndimage.binary_dilation(solid, iterations=FP_MARGIN_VOXELS)
        fp = fp[~near[tuple((fp - offset).T)]]
        labels[tuple((fp - offset).T)] = FALSE_POSITIVE
    return labels, offset


def _physical(index_zyx: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(N, 3) continuous voxel indices (Z, Y, X) -> (N, 3) physical points (x, y, z) mm."""
    ijk = index_zyx[:, ::-1] * np.asarray(geometry.spacing)
    direction = np.asarray(geometry.direction).reshape(3, 3)
    return ijk @ direction.T + np.asarray(geometry.origin)


def taubin_smooth(vertices: np.ndarray, faces: np.ndarray, iterations: int = SMOOTHING_ITERATIONS,
                  lam: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Taubin's lambda|mu smoothing (1995): removes the voxel staircase without shrinking thin tubes the way
    plain Laplacian smoothing does. (V, 3) vertices, (F, 3) faces -> smoothed (V, 3) float64."""
    n = len(vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = sparse.coo_matrix((np.ones(2 * len(edges)), (np.r_[edges[:, 0], edges[:, 1]],
                                                             np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0  # each neighbour once (shared edges appear twice)
    degree = np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1.0)[:, None]
    v = vertices.astype(np.float64)
    for _ in range(iterations):
        for factor in (lam, mu):
            v = v + factor * (adjacency @ v / degree - v)
    return v


def surface_mesh(labels: np.ndarray, offset: np.ndarray, geometry: Geometry, step_size: int = 1,
                 smoothing_iterations: int = SMOOTHING_ITERATIONS) -> SurfaceMesh:
    """Closed isosurface of ``labels > 0`` (a grid padded with empty voxels) with per-vertex label codes.

    offset: volume index of labels[0, 0, 0]; geometry: the image's (places the vertices in mm);
    step_size: marching-cubes step in voxels (2 or more: coarser, fewer faces); smoothing_iterations: Taubin
    smoothing steps (0: the raw marching-cubes surface).
    """
    solid = labels > 0
    if not solid.any():
        return SurfaceMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.uint8))
    verts, faces, _, _ = marching_cubes(solid.astype(np.float32), level=0.5, step_size=step_size,
                                        allow_degenerate=False)
    # each vertex takes the label of its nearest solid voxel (it lies between a solid and an empty one)
    nearest = ndimage.distance_transform_edt(~solid, return_distances=False, return_indices=True)
    rounded = np.clip(np.rint(verts).astype(np.int64), 0, np.asarray(labels.shape) - 1)
    vertex_labels = labels[tuple(nearest[axis][tuple(rounded.T)] for axis in range(3))]
    if smoothing_iterations:
        verts = taubin_smooth(verts, faces, smoothing_iterations)
    vertices = _physical(verts.astype(np.float64) + offset, geometry).astype(np.float32)
    return SurfaceMesh(vertices, faces.astype(np.int32), vertex_labels.astype(np.uint8))


def case_mesh(score: CaseScore, geometry: Geometry | None = None, step_size: int = 1) -> SurfaceMesh:
    """The coloured surface of one scored case (needs ``keep_false_positives`` for the blue parts).

    geometry: the image's; None places voxel centres at index * spacing (mm).
    """
    if geometry is None:
        geometry = Geometry(spacing=score.spacing_zyx[::-1])
    labels, offset = colour_volume(score)
    return surface_mesh(labels, offset, geometry, step_size)


def ply_bytes(mesh: SurfaceMesh, comments: tuple[str, ...] = ()) -> bytes:
    """Binary little-endian PLY: vertices (float x, y, z; uchar red, green, blue), triangles."""
    header = ["ply", "format binary_little_endian 1.0", *[f"comment {c}" for c in comments],
              f"element vertex {len(mesh.vertices)}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue",
              f"element face {len(mesh.faces)}", "property list uchar int vertex_indices", "end_header"]
    vertex = np.empty(len(mesh.vertices), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    vertex["p"], vertex["c"] = mesh.vertices, mesh.colours
    face = np.empty(len(mesh.faces), dtype=[("n", "u1"), ("i", "<i4", 3)])
    face["n"], face["i"] = 3, mesh.faces
    return ("\n".join(header) + "\n").encode("ascii") + vertex.tobytes() + face.tobytes()


def read_ply(data: bytes) -> SurfaceMesh:
    """Read back what :func:`ply_bytes` writes (for tests and checks); labels recovered from the colours."""
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    vertex = np.frombuffer(data, dtype=[("p", "<f4", 3), ("c", "u1", 3)], count=counts["vertex"], offset=end)
    face = np.frombuffer(data, dtype=[("n", "u1"), ("i", "<i4", 3)], count=counts["face"],
                         offset=end + vertex.nbytes)
    if np.any(face["n"] != 3):
        raise ValueError("only triangle meshes are read")
    colour_codes = {tuple(c): code for code, c in enumerate(COLOURS.tolist())}
    labels = np.array([colour_codes.get(tuple(c), 0) for c in vertex["c"].tolist()], dtype=np.uint8)
    return SurfaceMesh(vertex["p"].copy(), face["i"].copy(), labels)


def write_ply(path: str | os.PathLike, mesh: SurfaceMesh, comments: tuple[str, ...] = ()) -> None:
    """Write ``mesh`` as binary PLY (atomic write)."""
    write_bytes(path, ply_bytes(mesh, comments))
