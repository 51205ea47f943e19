"""Betti numbers of a binary volume: 26-connected foreground, 6-connected background.

A foreground voxel stands for a closed unit cube, so two voxels touching at a corner are one piece
(26-connectivity) and the background is connected through faces only (6-connectivity). Then
b0 = foreground components, b2 = cavities (background components that do not reach the outside) and
b1 = b0 + b2 - chi (tunnels, loops), with the Euler characteristic chi summed from local 2x2x2
configurations: every lattice corner gets the share of the cubes, faces, edges and itself that its
eight surrounding voxels contribute.

Everything runs on the foreground's bounding box with one voxel of background around it: the cropped
background joins the outside, so the numbers are those of the whole volume.
"""

from __future__ import annotations

import cc3d
import numpy as np

from nnunet_airway.evaluation.components import Components
from nnunet_airway.evaluation.masks import bounding_box


def _corner_table() -> np.ndarray:
    """(256,) int64: 8 x the Euler characteristic contributed at a lattice corner by each configuration of
    its 8 surrounding voxels (bit ``4*dz + 2*dy + dx`` set = voxel (dz, dy, dx) in the foreground).

    The corner counts 1 if any voxel is set; each of its 6 lattice edges (shared by 4 voxels, 2 corners)
    -1/2; each of its 12 faces (shared by 2 voxels, 4 corners) +1/4; each voxel (8 corners) -1/8.
    """
    table = np.zeros(256, dtype=np.int64)
    for code in range(256):
        cube = np.array([(code >> bit) & 1 for bit in range(8)], dtype=bool).reshape(2, 2, 2)
        corner = int(cube.any())
        edges = sum(int(np.take(cube, side, axis=axis).any()) for axis in range(3) for side in (0, 1))
        faces = 0
        for axis in range(3):
            pair = np.moveaxis(cube, axis, 0)  # (2, 2, 2): the two voxels either side of each face
            faces += int(np.count_nonzero(pair[0] | pair[1]))
        table[code] = 8 * corner - 4 * edges + 2 * faces - int(cube.sum())
    return table


CORNER_TABLE = _corner_table()


def _padded_crop(volume: np.ndarray) -> np.ndarray | None:
    """``volume > 0`` on its bounding box with one voxel of background on every side; None if empty."""
    box = bounding_box(volume)
    if box is None:
        return None
    return np.pad(volume[box] > 0, 1)


def euler_characteristic(volume: np.ndarray) -> int:
    """Euler characteristic of ``volume > 0`` ((Z, Y, X), any dtype) as a union of closed unit cubes."""
    mask = _padded_crop(volume)
    return 0 if mask is None else _euler(mask)


def _euler(padded: np.ndarray) -> int:
    """Euler characteristic of a bool volume with one voxel of background on every side: sparse (the corners
    around the foreground voxels only) when the foreground is under 1/64 of the box, else over every corner."""
    if np.count_nonzero(padded) * 64 < padded.size:
        codes = _corner_codes_near_foreground(padded)
    else:
        codes = _corner_codes(padded)
    total = int(np.bincount(codes, minlength=256) @ CORNER_TABLE)
    assert total % 8 == 0, total
    return total // 8


def _corner_codes(padded: np.ndarray) -> np.ndarray:
    """The nonzero configuration codes (bit ``4*dz + 2*dy + dx``) of every lattice corner between the voxels of
    ``padded``: the corner at (z, y, x) sees voxels (z + dz, y + dy, x + dx)."""
    nz, ny, nx = (n - 1 for n in padded.shape)
    codes = np.zeros((nz, ny, nx), dtype=np.uint8)
    for bit in range(8):
        dz, dy, dx = bit >> 2, (bit >> 1) & 1, bit & 1
        codes |= padded[dz:dz + nz, dy:dy + ny, dx:dx + nx].view(np.uint8) << np.uint8(bit)
    return codes[codes != 0]


def _corner_codes_near_foreground(padded: np.ndarray) -> np.ndarray:
    """:func:`_corner_codes` from the corners that touch a foreground voxel (the only ones with a nonzero code):
    a voxel v is seen by the corners v - (dz, dy, dx); the padding keeps every such corner inside the lattice."""
    _, ny, nx = padded.shape
    offsets = np.array([(bit >> 2) * ny * nx + ((bit >> 1) & 1) * nx + (bit & 1) for bit in range(8)])
    flat = padded.reshape(-1)
    corners = np.unique((np.flatnonzero(flat)[:, None] - offsets[None, :]).reshape(-1))
    codes = np.zeros(len(corners), dtype=np.uint8)
    for bit, offset in enumerate(offsets):
        codes |= flat[corners + offset].view(np.uint8) << np.uint8(bit)
    return codes


MIN_VOXELS_WITH_A_TUNNEL = 4  # fewer unit cubes cannot close a loop, nor (fewer than 6) enclose a cavity


def _component_betti(padded: np.ndarray) -> tuple[int, int]:
    """(b1, b2) of one 26-connected component (bool, one voxel of background around it)."""
    _, n_background = cc3d.connected_components(np.logical_not(padded).view(np.uint8), connectivity=6,
                                                return_N=True, binary_image=True)
    b2 = int(n_background) - 1  # the padding makes the outside one component
    return 1 + b2 - _euler(padded), b2


def betti_numbers(volume: np.ndarray | Components) -> tuple[int, int, int]:
    """(b0, b1, b2) of ``volume > 0`` ((Z, Y, X), any dtype, or its :class:`Components`): components
    (26-connected), tunnels, cavities (6-connected background components not reaching the outside).
    (0, 0, 0) for an empty volume.

    b1 and b2 are sums over the components (the homology of a disjoint union is the sum of its parts', and
    26-connected components never touch, not even at a corner), each taken in its own bounding box, so the
    background of the whole box is never labelled."""
    components = volume if isinstance(volume, Components) else Components(volume)
    b1 = b2 = 0
    for padded, _ in components.pieces(min_voxels=MIN_VOXELS_WITH_A_TUNNEL, pad=1):
        tunnels, cavities = _component_betti(padded)
        b1, b2 = b1 + tunnels, b2 + cavities
    return components.count, b1, b2
