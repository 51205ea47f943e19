"""Betti numbers and the Euler characteristic on tiny hand-built volumes with known topology."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import euler_number

from nnunet_airway.evaluation.topology import CORNER_TABLE, betti_numbers, euler_characteristic


def _volume(shape: tuple[int, int, int] = (7, 7, 7)) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint8)


def test_corner_table_counts_one_cube() -> None:
    # a lone voxel: every one of its 8 corners sees one set voxel; chi = 8 * (8 - 12 + 6 - 1) / 64 = 1
    single = [CORNER_TABLE[1 << bit] for bit in range(8)]
    assert single == [1] * 8
    assert CORNER_TABLE[0] == 0 and CORNER_TABLE[255] == 8 - 24 + 24 - 8


def test_empty_volume() -> None:
    assert betti_numbers(_volume()) == (0, 0, 0)
    assert euler_characteristic(_volume()) == 0


def test_single_voxel_and_blocks() -> None:
    one = _volume()
    one[3, 3, 3] = 1
    assert betti_numbers(one) == (1, 0, 0)
    block = _volume()
    block[1:5, 2:6, 1:3] = 7  # any nonzero value is foreground
    assert betti_numbers(block) == (1, 0, 0)


def test_corner_contact_is_one_component_and_separate_blobs_are_two() -> None:
    touching = _volume()
    touching[2, 2, 2] = touching[3, 3, 3] = 1  # 26-neighbours only
    assert betti_numbers(touching) == (1, 0, 0)
    apart = _volume()
    apart[1, 1, 1] = apart[4, 4, 4] = 1
    assert betti_numbers(apart) == (2, 0, 0)


def test_ring_has_one_tunnel() -> None:
    ring = _volume()
    ring[3, 1:6, 1:6] = 1
    ring[3, 2:5, 2:5] = 0  # a square annulus one voxel thick
    assert betti_numbers(ring) == (1, 1, 0)
    assert euler_characteristic(ring) == 0


def test_diagonal_ring_closes_through_corners() -> None:
    # four voxels in one plane joined only at their corners: a loop for 26-connectivity
    diamond = _volume()
    for y, x in ((1, 2), (2, 3), (3, 2), (2, 1)):
        diamond[3, y, x] = 1
    assert betti_numbers(diamond) == (1, 1, 0)


def test_figure_eight_has_two_tunnels() -> None:
    eight = _volume((5, 7, 9))
    eight[2, 1:6, 1:8] = 1
    eight[2, 2:5, 2:4] = 0
    eight[2, 2:5, 5:7] = 0
    assert betti_numbers(eight) == (1, 2, 0)


def test_hollow_cube_has_one_cavity() -> None:
    shell = _volume()
    shell[1:6, 1:6, 1:6] = 1
    shell[2:5, 2:5, 2:5] = 0
    assert betti_numbers(shell) == (1, 0, 1)
    assert euler_characteristic(shell) == 2


def test_object_on_the_border_counts_like_one_inside() -> None:
    ring = _volume((1, 5, 5))
    ring[0] = 1
    ring[0, 1:4, 1:4] = 0  # fills the array up to every face
    assert betti_numbers(ring) == (1, 1, 0)


@pytest.mark.parametrize("seed", range(6))
def test_euler_characteristic_agrees_with_scikit_image(seed: int) -> None:
    rng = np.random.default_rng(seed)
    volume = rng.random((9, 10, 11)) < 0.2 + 0.1 * seed
    assert euler_characteristic(volume) == euler_number(volume, connectivity=3)
    b0, b1, b2 = betti_numbers(volume)
    assert b0 - b1 + b2 == euler_characteristic(volume) and min(b0, b1, b2) >= 0


def _betti_of_the_whole_box(volume: np.ndarray) -> tuple[int, int, int]:
    """The direct computation the per-component sum must equal: every component and the whole background of the
    padded volume labelled at once."""
    import cc3d

    from nnunet_airway.evaluation.topology import _euler

    padded = np.pad(volume > 0, 1)
    _, b0 = cc3d.connected_components(padded.view(np.uint8), connectivity=26, return_N=True)
    _, n_background = cc3d.connected_components(np.logical_not(padded).view(np.uint8), connectivity=6, return_N=True)
    b2 = int(n_background) - 1
    return int(b0), int(b0) + b2 - _euler(padded), b2


@pytest.mark.parametrize("seed", range(6))
def test_per_component_betti_numbers_equal_the_whole_box_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    volume = (rng.random((14, 15, 16)) < (0.2 + 0.1 * seed)).astype(np.uint8)
    volume[5:10, 5:10, 5:10] = 1
    volume[6:9, 6:9, 6:9] = 0
    volume[7, 7, 7] = 1  # a component inside a cavity
    assert betti_numbers(volume) == _betti_of_the_whole_box(volume)


@pytest.mark.parametrize("seed", range(4))
def test_the_sparse_corner_count_equals_the_dense_one_and_scikit_image(seed: int) -> None:
    from nnunet_airway.evaluation.topology import _corner_codes, _corner_codes_near_foreground

    rng = np.random.default_rng(seed)
    volume = rng.random((30, 34, 38)) < 0.004 * (seed + 1)  # under 1/64 of the box: the sparse path
    volume[3:6, 4:7, 5:8] = True  # one solid block among the scattered voxels
    volume[4, 5, 6] = seed % 2 == 0  # a cavity in the block for odd seeds
    padded = np.pad(volume, 1)
    assert np.count_nonzero(padded) * 64 < padded.size
    dense, sparse = _corner_codes(padded), _corner_codes_near_foreground(padded)
    assert np.array_equal(np.bincount(dense, minlength=256), np.bincount(sparse, minlength=256))
    assert euler_characteristic(volume) == euler_number(volume, connectivity=3)
