"""The reference side of the evaluation: cleaned mask, centreline skeleton, parsed tree, trachea zone.

All arrays live in the reference's bounding box (``box``, volume coordinates, one voxel of margin) so a
512x512x400 CT costs no more than its airway tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from nnunet_airway.evaluation.components import Components
from nnunet_airway.evaluation.masks import Box, box_offset, fill_holes, outer_boundary
from nnunet_airway.evaluation.skeleton_graph import SkeletonGraph, nonzero_coords, skeleton_graph
from nnunet_airway.evaluation.topology import betti_numbers
from nnunet_airway.evaluation.tree import AirwayTree, build_tree


@dataclass(frozen=True)
class ParsedReference:
    """A reference airway label prepared for scoring.

    mask: bool, shape of ``box``: largest component with holes filled.
    box: where ``mask`` lies in the volume.
    skeleton: the graph of the mask's Lee skeleton (coordinates relative to ``box``).
    tree: branches parsed from the skeleton.
    betti: (b0, b1, b2) of the reference as given (before the largest-component step; 26-connected
        foreground, see topology.betti_numbers).
    trachea_zone: bool mask over ``trachea_box`` (volume coordinates): the voxels nearer to the trachea's
        centreline than to any other tree centreline voxel and within ``zone_reach_mm`` of it
        (None when there is no trachea).
    voxels_outside: reference voxels left out because they lie outside the largest component.
    voxels_given: airway voxels of the reference as given (before the largest-component step and hole filling).
    """

    mask: np.ndarray
    box: Box
    skeleton: SkeletonGraph
    tree: AirwayTree
    trachea_zone: np.ndarray | None
    trachea_box: Box | None
    zone_reach_mm: float
    betti: tuple[int, int, int]
    voxels_outside: int = 0
    voxels_given: int = 0

    def volume_coords(self, voxels: np.ndarray) -> np.ndarray:
        """(K, 3) volume coordinates of skeleton voxels (rows of ``skeleton.coords``)."""
        return self.skeleton.coords[voxels] + box_offset(self.box)


def lee_skeleton(mask: np.ndarray) -> np.ndarray:
    """Lee (1994) 3-D skeleton as uint8 0/1 (skimage's ``skeletonize``; a bool skeleton would be fine here
    because neighbours are counted on coordinates, but uint8 matches the ATM'22 code's convention)."""
    return skeletonize(mask).astype(np.uint8)


def lumen_radius(mask: np.ndarray, points: np.ndarray, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """Euclidean distance (mm) from each of ``points`` ((K, 3) voxel indices inside ``mask``) to the nearest
    background voxel: the value of the distance transform there, computed sparsely.

    The nearest background voxel always touches the mask (a step from it towards the point would otherwise
    be a nearer background voxel), so a k-d tree over the mask's outer boundary gives the exact value.
    """
    if len(points) == 0:
        return np.zeros(0, dtype=np.float64)
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    boundary = nonzero_coords(outer_boundary(mask)) * spacing
    if len(boundary) == 0:  # the mask fills its whole array: no background to measure against
        return np.full(len(points), float(np.max(np.asarray(mask.shape) * spacing)))
    distance, _ = cKDTree(boundary).query(points * spacing)
    return distance


class ParsedTree(NamedTuple):
    """The tree part of a parsed reference (see :class:`ParsedReference` for the fields)."""

    mask: np.ndarray
    box: Box
    skeleton: SkeletonGraph
    tree: AirwayTree
    radius_mm: np.ndarray  # (N,) lumen radius at each skeleton voxel
    voxels_outside: int
    voxels_given: int


def parse_tree(reference: np.ndarray, spacing_zyx: tuple[float, float, float], connectivity: int,
               components: Components | None = None, cavities: int | None = None) -> ParsedTree:
    """Clean, skeletonise and parse a reference label ((Z, Y, X), nonzero = airway) into its tree, without the
    trachea zone and the Betti numbers (``components``: the label's, when already at hand; their labels are
    released here). ``cavities``: the label's b2 when known; 0 skips the hole filling (a cavity of the largest
    component, 6-, 18- or 26-connected, is a cavity of the label: its border voxels are the component's). Raises
    ValueError when the reference has no foreground."""
    components = Components(reference) if components is None else components
    mask, box = components.largest(connectivity, margin=1)
    if box is None:
        raise ValueError("the reference has no airway voxels")
    voxels_given = int(components.sizes.sum())
    voxels_outside = voxels_given - int(mask.sum())
    components.release()
    if cavities != 0:
        mask = fill_holes(mask)
    skeleton = skeleton_graph(lee_skeleton(mask), spacing_zyx)
    radius = lumen_radius(mask, skeleton.coords, spacing_zyx)
    return ParsedTree(mask, box, skeleton, build_tree(skeleton, radius), radius, voxels_outside, voxels_given)


def parse_reference(reference: np.ndarray, spacing_zyx: tuple[float, float, float], connectivity: int) -> ParsedReference:
    """Clean, skeletonise and parse a reference label ((Z, Y, X), nonzero = airway), with its trachea zone and
    Betti numbers. Raises ValueError when the reference has no foreground.
    """
    components = Components(reference)  # labelled once for the Betti numbers and the largest component
    betti = betti_numbers(components)
    parsed = parse_tree(reference, spacing_zyx, connectivity, components, cavities=betti[2])
    zone, zone_box, reach = trachea_zone(parsed.tree, parsed.skeleton, parsed.radius_mm, parsed.box,
                                         reference.shape, spacing_zyx)
    return ParsedReference(mask=parsed.mask, box=parsed.box, skeleton=parsed.skeleton, tree=parsed.tree,
                           trachea_zone=zone, trachea_box=zone_box, zone_reach_mm=reach,
                           betti=betti, voxels_outside=parsed.voxels_outside,
                           voxels_given=parsed.voxels_given)


def trachea_zone(
    tree: AirwayTree, skeleton: SkeletonGraph, radius_mm: np.ndarray, box: Box, volume_shape: tuple[int, ...],
    spacing_zyx: tuple[float, float, float],
) -> tuple[np.ndarray | None, Box | None, float]:
    """Voxels nearer to the trachea's centreline than to the rest of the tree's, within a reach.

    The reach is twice the trachea's largest lumen radius plus two voxels; it keeps the computation in a
    small box around the trachea (the box extends two reaches, so the comparison is exact for every voxel
    within the reach). radius_mm: (N,) lumen radius at each skeleton voxel.
    Returns (zone mask, zone box in volume coordinates, reach in mm).
    """
    trachea = tree.trachea
    if trachea is None:
        return None, None, 0.0
    spacing = np.asarray(spacing_zyx, dtype=np.float64)
    reach = 2.0 * float(radius_mm[trachea.voxels].max()) + 2.0 * float(spacing.max())
    offset = box_offset(box)
    coords = skeleton.coords[trachea.voxels] + offset
    margin = np.ceil(2.0 * reach / spacing).astype(np.int64)
    lo = np.maximum(coords.min(axis=0) - margin, 0)
    hi = np.minimum(coords.max(axis=0) + margin + 1, np.asarray(volume_shape))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    trachea_line = np.ones(shape, dtype=bool)
    trachea_line[tuple((coords - lo).T)] = False
    to_trachea = ndimage.distance_transform_edt(trachea_line, sampling=spacing_zyx)
    del trachea_line
    other_coords = skeleton.coords[np.setdiff1d(tree.tree_voxels(), trachea.voxels)] + offset
    inside = np.all((other_coords >= lo) & (other_coords < hi), axis=1)
    zone = to_trachea <= reach
    if inside.any():
        other_line = np.ones(shape, dtype=bool)
        other_line[tuple((other_coords[inside] - lo).T)] = False
        zone &= to_trachea < ndimage.distance_transform_edt(other_line, sampling=spacing_zyx)
    zone_box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return zone, zone_box, reach  # type: ignore[return-value]
