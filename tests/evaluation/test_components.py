"""Components: 26-connected components labelled once, each in its own box, and the largest 6/18/26-connected
component found by splitting only the 26-connected ones that can hold it (tiny hand-built volumes, exact
answers, and cc3d's whole-volume answer on random volumes)."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from nnunet_airway.evaluation.components import Components
from nnunet_airway.evaluation.masks import bounding_box


def test_an_empty_volume_has_no_component_and_no_largest() -> None:
    components = Components(np.zeros((4, 5, 6), np.uint8))
    assert components.count == 0 and components.box is None and list(components.pieces()) == []
    mask, box = components.largest(6)
    assert box is None and mask.shape == (0, 0, 0)


def test_pieces_sizes_and_boxes_of_hand_built_components() -> None:
    volume = np.zeros((6, 7, 8), np.uint8)
    volume[0, 0, 0] = 1  # a corner voxel (first in raster order)
    volume[2:4, 3, 2:6] = 1  # a 2 x 1 x 4 slab
    volume[5, 6, 7] = 7  # any positive value is airway
    volume[5, 0, 7] = 255
    components = Components(volume)
    assert components.count == 4
    assert components.sizes.tolist() == [1, 8, 1, 1]
    assert components.boxes[1] == (slice(2, 4), slice(3, 4), slice(2, 6))
    slab, box = list(components.pieces(min_voxels=2))[0]
    assert box == components.boxes[1] and slab.dtype == bool and slab.all() and slab.shape == (2, 1, 4)


def test_a_diagonal_contact_is_one_26_component_but_two_6_components() -> None:
    volume = np.zeros((5, 5, 5), bool)
    volume[1, 1, 1:4] = True  # 3 voxels
    volume[2, 2, 4] = True  # touches (1, 1, 3) at a corner only
    volume[3, 2:4, 4] = True  # 6-connected to (2, 2, 4): 3 voxels with it
    components = Components(volume)
    assert components.count == 1
    six, box6 = components.largest(6)
    assert int(six.sum()) == 3 and box6 == (slice(1, 2), slice(1, 2), slice(1, 4))  # the first in raster order
    whole, box26 = components.largest(26, margin=1)
    assert int(whole.sum()) == 6 and box26 == (slice(0, 5), slice(0, 5), slice(0, 5))
    assert whole[tuple(np.array([2, 2, 4]) - [s.start for s in box26])]


def test_a_smaller_26_component_can_hold_the_largest_6_component() -> None:
    volume = np.zeros((9, 9, 9), bool)
    volume[0, np.arange(7), np.arange(7)] = True  # 7 voxels along a diagonal: 7 pieces of 1 under 6-connectivity
    volume[5:7, 5:7, 3] = True  # a 2 x 2 square: 4 voxels, 6-connected
    components = Components(volume)
    assert components.sizes.tolist() == [7, 4]
    mask, box = components.largest(6)
    assert int(mask.sum()) == 4 and box == (slice(5, 7), slice(5, 7), slice(3, 4))


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("seed", range(4))
def test_the_largest_component_is_cc3ds_on_random_volumes(connectivity: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    volume = rng.random((16, 18, 20)) < 0.25 + 0.05 * seed
    expected = cc3d.largest_k(volume.view(np.uint8), k=1, connectivity=connectivity) > 0
    mask, box = Components(volume).largest(connectivity, margin=2)
    placed = np.zeros(volume.shape, bool)
    placed[box] = mask
    labels, _ = cc3d.connected_components(volume.view(np.uint8), connectivity=connectivity, return_N=True)
    sizes = np.bincount(labels.reshape(-1))[1:]
    if np.count_nonzero(sizes == sizes.max()) == 1:  # a tie may go either way
        assert np.array_equal(placed, expected)
    else:
        assert int(placed.sum()) == int(expected.sum())
    tight = bounding_box(placed)
    assert box == tuple(slice(max(t.start - 2, 0), min(t.stop + 2, n)) for t, n in zip(tight, volume.shape, strict=True))


def test_a_wrong_connectivity_or_shape_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="connectivity"):
        Components(np.ones((2, 2, 2), bool)).largest(8)
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        Components(np.ones((2, 2), bool))


def test_a_padded_piece_is_the_piece_with_background_around_it() -> None:
    volume = np.zeros((5, 6, 7), bool)
    volume[1:3, 2:5, 3] = True
    components = Components(volume)
    padded = components.piece(0, pad=2)
    assert padded.shape == (2 + 4, 3 + 4, 1 + 4)
    assert np.array_equal(padded[2:-2, 2:-2, 2:-2], components.piece(0)) and int(padded.sum()) == 6
