"""Drawing attention maps as in Qin et al. 2020, Fig. 4: per model one row of image, prediction and the
decoder stages' maps G (coarse to fine), each min-max scaled and shown with the jet colour map.

Pure numpy + matplotlib (Figure only, no pyplot); volumes are (Z, Y, X) arrays on one image grid.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

VIEWS = {"axial": 0, "coronal": 1, "sagittal": 2}  # the array axis a view fixes (or projects along)
PANEL_INCHES = 2.4
DPI = 100


@dataclass(frozen=True)
class AttentionRow:
    """One model's pictures: ``label`` (e.g. the trainer), ``prediction`` (Z, Y, X) labels and ``maps``,
    the decoder stages' attention maps on the image grid, coarse to fine."""

    label: str
    prediction: np.ndarray
    maps: Sequence[np.ndarray]


@dataclass(frozen=True)
class View:
    """A slice (``index`` along ``axis``'s array axis) or, with ``projection``, a projection along it."""

    axis: str = "coronal"
    index: int | None = None
    projection: bool = False

    def describe(self, shape: tuple[int, ...]) -> str:
        if self.projection:
            return f"{self.axis} projection"
        return f"{self.axis} slice {self.index} of {shape[VIEWS[self.axis]]}"


def parse_slice(text: str) -> View:
    """``"axial"``, ``"coronal:40"``, ``"sagittal:12"`` -> View (no index: chosen from the prediction)."""
    name, _, index = text.partition(":")
    if name not in VIEWS:
        raise ValueError(f"the view must be axial, coronal or sagittal (optionally :INDEX), got {text!r}")
    if index and not index.lstrip("-").isdigit():
        raise ValueError(f"the slice index must be an integer, got {text!r}")
    return View(name, int(index) if index else None)


def resolve_view(view: View, prediction: np.ndarray) -> View:
    """Fill in a slice index: the slice with the most predicted airway (the middle one if none); check it."""
    if view.projection:
        return view
    axis, n = VIEWS[view.axis], prediction.shape[VIEWS[view.axis]]
    index = view.index
    if index is None:
        counts = np.count_nonzero(prediction, axis=tuple(a for a in range(3) if a != axis))
        index = int(np.argmax(counts)) if counts.any() else n // 2
    if not 0 <= index < n:
        raise ValueError(f"{view.axis} slice {index} is outside the image (0 to {n - 1})")
    return View(view.axis, index, False)


def plane(volume: np.ndarray, view: View, reduce: str = "max") -> np.ndarray:
    """The 2-D picture of ``volume`` in ``view``, rows pointing superior/anterior as the array axes run:
    axial (Y, X), coronal (Z, X), sagittal (Z, Y). Projections use ``reduce`` ("max", "min" or "mean")."""
    axis = VIEWS[view.axis]
    if view.projection:
        return {"max": np.max, "min": np.min, "mean": np.mean}[reduce](volume, axis=axis)
    return np.take(volume, view.index, axis=axis)


def _aspect(view: View, spacing_zyx: Sequence[float]) -> float:
    rows, cols = [a for a in range(3) if a != VIEWS[view.axis]]
    return float(spacing_zyx[rows]) / float(spacing_zyx[cols])


def min_max(picture: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] (a constant picture becomes 0)."""
    low, high = float(picture.min()), float(picture.max())
    return np.zeros_like(picture, dtype=np.float32) if high <= low else ((picture - low) / (high - low)).astype(np.float32)


def figure_size(n_rows: int, n_stages: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`attention_figure_png`."""
    return round((n_stages + 2) * PANEL_INCHES * DPI), round((n_rows * PANEL_INCHES + 0.5) * DPI)


def attention_figure_png(image: np.ndarray, rows: Sequence[AttentionRow], spacing_zyx: Sequence[float], view: View,
                         title: str = "") -> bytes:
    """PNG bytes: per row the image, the prediction over it, and each stage's map (min-max scaled, jet).

    image: (Z, Y, X) CT in HU (shown between its 1st and 99th percentiles; a projection takes the mean: a
    minimum would show only the air around the body); spacing_zyx: mm per voxel, for the aspect ratio; view: from
    :func:`resolve_view`. Maps and predictions are sliced, or projected with their maximum.
    """
    n_stages = max(len(row.maps) for row in rows)
    width, height = figure_size(len(rows), n_stages)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    axes = np.atleast_2d(fig.subplots(len(rows), n_stages + 2, squeeze=False))
    aspect = _aspect(view, spacing_zyx)
    picture = plane(image.astype(np.float32), view, reduce="mean")
    low, high = np.percentile(picture, [1, 99])
    shown = {"origin": "lower", "aspect": aspect, "interpolation": "nearest"}
    for r, row in enumerate(rows):
        axes[r, 0].imshow(picture, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), **shown)
        axes[r, 1].imshow(picture, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), **shown)
        mask = plane(row.prediction, view) > 0
        overlay = np.zeros((*mask.shape, 4), dtype=np.float32)
        overlay[mask] = (1.0, 0.85, 0.0, 0.9)
        axes[r, 1].imshow(overlay, **shown)
        for s in range(n_stages):
            if s < len(row.maps):
                axes[r, s + 2].imshow(min_max(plane(row.maps[s], view)), cmap="jet", vmin=0, vmax=1,
                                      **{**shown, "interpolation": "bilinear"})
        axes[r, 0].set_ylabel(row.label, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
    names = ["image", "prediction"] + [
        f"decoder {s + 1}" + (" (coarse)" if s == 0 else " (fine)" if s == n_stages - 1 else "")
        for s in range(n_stages)]
    for ax, name in zip(axes[0], names, strict=True):
        ax.set_title(name, fontsize=9)
    fig.suptitle(title or f"attention maps G = sum_c |A_c|^2, min-max scaled ({view.describe(image.shape)})",
                 fontsize=9)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.01, top=1 - 0.45 / (height / DPI), wspace=0.04, hspace=0.04)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
