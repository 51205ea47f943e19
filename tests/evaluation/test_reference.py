"""parse_reference: the largest component's cavities are filled before the skeleton, and the filling is left out
only when the label's Betti numbers show it has no cavity."""

from __future__ import annotations

import numpy as np

from nnunet_airway.evaluation.reference import parse_reference, parse_tree


def _tube(cavity: bool) -> np.ndarray:
    label = np.zeros((40, 15, 15), np.uint8)
    z, y, x = np.ogrid[:40, :15, :15]
    label[((y - 7) ** 2 + (x - 7) ** 2 <= 9) & (z >= 2) & (z < 38)] = 1
    if cavity:
        label[20, 7, 7] = 0  # one enclosed background voxel on the axis
    return label


def test_a_cavity_in_the_reference_is_filled_and_counted() -> None:
    parsed = parse_reference(_tube(cavity=True), (1.0, 1.0, 1.0), connectivity=6)
    assert parsed.betti == (1, 0, 1)
    centre = np.array([20, 7, 7]) - [s.start for s in parsed.box]
    assert parsed.mask[tuple(centre)]
    assert parsed.voxels_given == int(_tube(cavity=True).sum())


def test_a_label_without_cavity_gives_the_same_parse_with_and_without_the_filling() -> None:
    label = _tube(cavity=False)
    parsed = parse_reference(label, (1.0, 1.0, 1.0), connectivity=6)
    assert parsed.betti == (1, 0, 0)
    filled = parse_tree(label, (1.0, 1.0, 1.0), 6)  # cavities unknown: filled
    assert np.array_equal(parsed.mask, filled.mask)
    assert np.array_equal(parsed.skeleton.coords, filled.skeleton.coords)
    assert int(parsed.mask.sum()) == int(label.sum())
