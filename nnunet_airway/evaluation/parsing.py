"""A parsed reference as the two volumes ATM'26 gives with every label: the centreline skeleton and its branch
parsing, in the form the organisers' ``validate_parsing`` accepts.

skeleton: uint8 (Z, Y, X), 1 on the parsed tree's centreline (branches and branching points; skeleton pieces the
    parse left out, such as spurs, the branches removed to break loops and parts off the largest component, are
    not written).
parsing: int32 (Z, Y, X), branch IDs 1..N on exactly the skeleton's voxels, 0 elsewhere; ID 1 is the trachea,
    then the order of the parse (parents before children). A branching-point voxel takes the ID of the
    nearest branch voxel (Euclidean in mm).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from nnunet_airway.errors import DataError
from nnunet_airway.evaluation.masks import box_offset
from nnunet_airway.evaluation.reference import ParsedReference, parse_reference

PARSE_CONNECTIVITY = 26  # the ATM'26 protocol's connectivity, used for the reference's largest component too
SKELETON_SUFFIX, PARSING_SUFFIX = "_skeleton", "_parsing"  # <case>_skeleton.nii.gz, <case>_parsing.nii.gz (ATM'26)


def parsing_file_names(case: str, extension: str = ".nii.gz") -> tuple[str, str]:
    """The file names of a case's skeleton and parsing volumes, as the ATM'26 data names them."""
    return f"{case}{SKELETON_SUFFIX}{extension}", f"{case}{PARSING_SUFFIX}{extension}"


def parsing_volumes(reference: ParsedReference, volume_shape: tuple[int, int, int],
                    spacing_zyx: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(skeleton, parsing) volumes of shape ``volume_shape`` from a parsed reference (see the module docstring);
    ``spacing_zyx`` (mm) measures the distance that gives a branching point its branch."""
    branches = reference.tree.branches
    skeleton = np.zeros(volume_shape, np.uint8)
    parsing = np.zeros(volume_shape, np.int32)
    if not branches:
        return skeleton, parsing
    coords = reference.skeleton.coords + box_offset(reference.box)
    branch_voxels = np.concatenate([b.voxels for b in branches])
    branch_ids = np.concatenate([np.full(len(b.voxels), i + 1, np.int32) for i, b in enumerate(branches)])
    junctions = reference.tree.junction_voxels
    if len(junctions):
        spacing = np.asarray(spacing_zyx, dtype=np.float64)
        _, nearest = cKDTree(coords[branch_voxels] * spacing).query(coords[junctions] * spacing)
        branch_voxels = np.concatenate([branch_voxels, junctions])
        branch_ids = np.concatenate([branch_ids, branch_ids[nearest]])
    where = tuple(coords[branch_voxels].T)
    skeleton[where] = 1
    parsing[where] = branch_ids
    return skeleton, parsing


def parse_label(label: np.ndarray, spacing_zyx: tuple[float, float, float],
                name: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """(skeleton, parsing) volumes of a binary airway label ((Z, Y, X), nonzero = airway, ``spacing_zyx`` in mm):
    our tree parse of its largest 26-connected component. DataError naming ``name`` when the label has no airway
    or too little of one to hold a branch."""
    try:
        reference = parse_reference(label, spacing_zyx, PARSE_CONNECTIVITY)
    except ValueError as error:
        raise DataError(f"{name}: {error}; remove the case or fix the label") from None
    if not reference.tree.branches:
        raise DataError(f"{name}: the airway is too small to hold one branch (its skeleton has "
                        f"{reference.skeleton.n_voxels} voxels); remove the case or fix the label")
    return parsing_volumes(reference, tuple(int(n) for n in label.shape), spacing_zyx)  # type: ignore[arg-type]
