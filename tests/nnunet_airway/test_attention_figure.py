"""The attention figure (Fig. 4 style): views, scaling and the PNG's size."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nnunet_airway.attention_figure import (
    AttentionRow,
    View,
    attention_figure_png,
    figure_size,
    min_max,
    parse_slice,
    plane,
    resolve_view,
)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_parse_slice() -> None:
    assert parse_slice("axial:12") == View("axial", 12)
    assert parse_slice("coronal") == View("coronal", None)
    for bad in ("frontal", "axial:x"):
        with pytest.raises(ValueError):
            parse_slice(bad)


def test_default_slice_is_the_one_with_most_airway_and_indices_are_checked() -> None:
    prediction = np.zeros((10, 12, 14), dtype=np.uint8)
    prediction[2:8, 5, 3:9] = 1
    prediction[4, 7, 4] = 1
    assert resolve_view(View("coronal"), prediction).index == 5
    assert resolve_view(View("axial"), np.zeros_like(prediction)).index == 5  # nothing predicted: the middle
    with pytest.raises(ValueError, match="outside"):
        resolve_view(View("sagittal", 14), prediction)


def test_planes_and_projections_have_the_views_axes() -> None:
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    assert plane(volume, View("axial", 1)).shape == (3, 4)
    assert plane(volume, View("coronal", 0)).shape == (2, 4)
    assert plane(volume, View("sagittal", 3)).shape == (2, 3)
    np.testing.assert_array_equal(plane(volume, View("coronal", None, True)), volume.max(axis=1))
    np.testing.assert_array_equal(plane(volume, View("coronal", None, True), "min"), volume.min(axis=1))


def test_min_max_scaling() -> None:
    np.testing.assert_allclose(min_max(np.array([2.0, 4.0, 6.0])), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(min_max(np.full(3, 7.0)), np.zeros(3))


@pytest.mark.parametrize("n_rows", [1, 2])
def test_figure_has_the_expected_size(n_rows: int) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(-800, 100, (16, 20, 24)).astype(np.float32)
    prediction = np.zeros(image.shape, dtype=np.uint8)
    prediction[4:12, 10, 12] = 1
    maps = [rng.random((16, 20, 24)).astype(np.float32) for _ in range(4)]
    rows = [AttentionRow(f"model {r}", prediction, maps) for r in range(n_rows)]
    for view in (View("coronal", 10), View("axial", None, True)):
        data = attention_figure_png(image, rows, (2.0, 1.0, 1.0), view)
        assert png_size(data) == figure_size(n_rows, 4)
