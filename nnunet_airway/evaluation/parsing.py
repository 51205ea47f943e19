"""A parsed reference as the two volumes ATM'26 gives with every label: the centreline skeleton and its branch
parsing, in the form the organisers' ``validate_parsing`` accepts.

skeleton: uint8 (Z, Y, X), 1 on the parsed tree's centreline (branches and branching points; skeleton pieces the
    parse left out, such as spurs, the branches removed to break loops and parts off the largest component, are
    not written).
parsing: the smallest unsigned integer type that holds N (uint8 up to 255 branches, else uint16; a 512 x 512 x 682
    volume is 179 MB in memory as uint8, 715 MB as int32) (Z, Y, X), branch IDs 1..N on exactly the skeleton's
    voxels, 0 elsewhere; ID 1 is the trachea,
    then the order of the parse (parents before children). A branching-point voxel takes the ID of the
    nearest branch voxel (Euclidean in mm).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.masks import box_offset
from nnunet_airway.evaluation.reference import ParsedTree, parse_tree

PARSE_CONNECTIVITY = 26  # the ATM'26 protocol's connectivity, used for the reference's largest component too
SKELETON_SUFFIX, PARSING_SUFFIX = "_skeleton", "_parsing"  # <case>_skeleton.nii.gz, <case>_parsing.nii.gz (ATM'26)


def parsing_file_names(case: str, extension: str = ".nii.gz") -> tuple[str, str]:
    """The file names of a case's skeleton and parsing volumes, as the ATM'26 data names them."""
    return f"{case}{SKELETON_SUFFIX}{extension}", f"{case}{PARSING_SUFFIX}{extension}"


def centreline_parsing(parsed: ParsedTree, spacing_zyx: tuple[float, float, float],
                       volume_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(flat indices (K,) of the parsed tree's centreline voxels in the (Z, Y, X) volume, branch IDs (K,) int64
    1..N) of a parsed reference (see the module docstring); ``spacing_zyx`` (mm) measures the distance that gives
    a branching point its branch."""
    branches = parsed.tree.branches
    if not branches:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    coords = parsed.skeleton.coords + box_offset(parsed.box)
    voxels = np.concatenate([b.voxels for b in branches])
    ids = np.concatenate([np.full(len(b.voxels), i + 1, np.int64) for i, b in enumerate(branches)])
    junctions = parsed.tree.junction_voxels
    if len(junctions):
        spacing = np.asarray(spacing_zyx, dtype=np.float64)
        _, nearest = cKDTree(coords[voxels] * spacing).query(coords[junctions] * spacing)
        voxels, ids = np.concatenate([voxels, junctions]), np.concatenate([ids, ids[nearest]])
    flat = np.ravel_multi_index(tuple(coords[voxels].T), volume_shape)
    order = np.argsort(flat)
    return flat[order], ids[order]


def parsing_dtype(branches: int) -> np.dtype:
    """The smallest of uint8, uint16 and uint32 that holds branch IDs up to ``branches``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if branches <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"{branches} branches do not fit a uint32 parsing volume")


def parsing_volumes(centreline: np.ndarray, branch_ids: np.ndarray,
                    volume_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(skeleton uint8, parsing of :func:`parsing_dtype`) volumes of ``volume_shape`` from
    :func:`centreline_parsing`'s output."""
    skeleton = np.zeros(volume_shape, np.uint8)
    parsing = np.zeros(volume_shape, parsing_dtype(int(branch_ids.max()) if len(branch_ids) else 0))
    skeleton.reshape(-1)[centreline] = 1
    parsing.reshape(-1)[centreline] = branch_ids
    return skeleton, parsing


def parse_centreline(label: np.ndarray, spacing_zyx: tuple[float, float, float],
                     name: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """:func:`centreline_parsing` of a binary airway label ((Z, Y, X), nonzero = airway, ``spacing_zyx`` in mm):
    our tree parse of its largest 26-connected component. DataError naming ``name`` when the label has no airway
    or too little of one to hold a branch."""
    try:
        parsed = parse_tree(label, spacing_zyx, PARSE_CONNECTIVITY)
    except ValueError as error:
        raise DataError(f"{name}: {error}; remove the case or fix the label") from None
    if not parsed.tree.branches:
        raise DataError(f"{name}: the airway is too small to hold one branch (its skeleton has "
                        f"{parsed.skeleton.n_voxels} voxels); remove the case or fix the label")
    return centreline_parsing(parsed, spacing_zyx, tuple(int(n) for n in label.shape))  # type: ignore[arg-type]


def parse_label(label: np.ndarray, spacing_zyx: tuple[float, float, float],
                name: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """(skeleton, parsing) volumes of a binary airway label (see :func:`parse_centreline`)."""
    centreline, branch_ids = parse_centreline(label, spacing_zyx, name)
    return parsing_volumes(centreline, branch_ids, tuple(int(n) for n in label.shape))  # type: ignore[arg-type]
