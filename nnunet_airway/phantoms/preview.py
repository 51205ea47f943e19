"""A PNG for judging a phantom by eye: coronal projections of the CT and of the airway label.

Panels, all coronal (projected along y, anterior-posterior) and drawn in physical proportions:
minimum intensity projection of the CT inside the body over the coronal slab that holds the labelled
tree (lightly smoothed, as airway MinIPs are read),
maximum intensity projection of the CT inside the lungs (the vessels), one coronal slice through the
carina (on a crop, the slice with the most label), and the label's maximum projection coloured by depth.
Body and lungs are found by thresholds on the CT itself, as a viewer would; a crop counts as all body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from nnunet_airway import writing
from nnunet_airway.phantoms.case import Phantom

_IN_PLANE = np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]]])


def _filled_per_slice(mask: np.ndarray, max_hole_voxels: int | None = None) -> np.ndarray:
    """``mask`` plus what it encloses in each axial slice; with ``max_hole_voxels`` only the smaller holes
    (vessels and airways inside the lungs, not the diaphragm's dome seen through a lung's base)."""
    filled = np.stack([ndimage.binary_fill_holes(mask[k]) for k in range(mask.shape[0])])
    if max_hole_voxels is None:
        return filled
    holes, n = ndimage.label(filled & ~mask, _IN_PLANE)
    small = np.bincount(holes.ravel(), minlength=n + 1) <= max_hole_voxels
    small[0] = False
    return mask | small[holes]


@dataclass(frozen=True)
class PreviewPanel:
    """One coronal panel: a (Z, X) image, its colour map, display window and title."""

    image: np.ndarray
    cmap: str
    window: tuple[float, float]
    title: str


def preview_panels(phantom: Phantom) -> list[PreviewPanel]:
    """The four coronal panels of the preview (MinIP, MIP in lungs, a slice, label depth), each (Z, X)."""
    ct, label, truth = phantom.ct, phantom.label, phantom.truth
    smooth = ndimage.gaussian_filter(ct.astype(np.float32), 0.5)
    cropped = bool(truth.get("crop"))
    # a crop (lobe, lung) lies inside the chest: no outside air to tell the body from, so all of it is body
    body = np.ones(ct.shape, dtype=bool) if cropped else _filled_per_slice(smooth > -400)
    sx, sy, _ = phantom.geometry.spacing
    oy = phantom.geometry.origin[1]
    lungs = _filled_per_slice(ndimage.binary_opening(body & (smooth < -500), iterations=2),
                              max_hole_voxels=int(700.0 / (sx * sy)))  # holes up to ~30 mm across
    # MinIP over the coronal slab that holds the labelled tree (as a reader would place it)
    tree_y = [b[k][1] for b in truth["branches"] if b["labelled"] for k in ("start_mm", "end_mm")]
    slab_mm = (min(tree_y) - 5.0, max(tree_y) + 5.0) if tree_y else (oy, oy + ct.shape[1] * sy)
    j0, j1 = (int(np.clip(round((v - oy) / sy), 0, ct.shape[1])) for v in slab_mm)
    j1 = max(j1, j0 + 1)
    minip = np.where(body[:, j0:j1], smooth[:, j0:j1], np.inf).min(axis=1)
    minip[~np.isfinite(minip)] = -1000.0
    mip = np.where(lungs, ct, -1000).max(axis=1)
    if cropped or not truth["branches"]:  # the carina is outside a crop: take the slice with the most label
        j = int(np.argmax(label.sum(axis=(0, 2)))) if label.any() else ct.shape[1] // 2
        slice_title = f"CT coronal slice y={oy + j * sy:.0f} mm (most label)"
    else:
        carina_y = truth["branches"][0]["end_mm"][1]
        j = int(np.clip(round((carina_y - oy) / sy), 0, ct.shape[1] - 1))
        slice_title = f"CT coronal slice y={carina_y:.0f} mm (carina)"
    any_label = label.any(axis=1)
    first = np.argmax(label, axis=1).astype(float)  # depth of the front-most labelled voxel
    depth = np.where(any_label, first / max(label.shape[1] - 1, 1), np.nan)
    return [
        PreviewPanel(minip, "gray", (-1000, -750), f"CT MinIP, slab y {slab_mm[0]:.0f}..{slab_mm[1]:.0f} mm (HU)"),
        PreviewPanel(mip, "gray", (-1000, 100), "CT MIP in lungs (HU)"),
        PreviewPanel(ct[:, j, :], "gray", (-1000, 200), slice_title),
        PreviewPanel(depth, "viridis_r", (0, 1),
                     f"label MIP ({truth['n_labelled_branches']} branches), depth-coloured"),
    ]


def write_preview(path: str | Path, phantom: Phantom) -> Path:
    """Write the preview PNG of ``phantom`` atomically and return its path."""
    import io as pyio

    from matplotlib.figure import Figure  # no pyplot: no global backend state, no window

    truth = phantom.truth
    sx, _, sz = phantom.geometry.spacing  # for the extent
    ox, _, oz = phantom.geometry.origin
    nz, _, nx = phantom.ct.shape
    extent = (ox - sx / 2, ox + (nx - 0.5) * sx, oz - sz / 2, oz + (nz - 0.5) * sz)
    panels = preview_panels(phantom)

    fig = Figure(figsize=(17, 5.2), layout="constrained")
    axes = fig.subplots(1, 4)
    for ax, panel in zip(axes, panels, strict=True):
        if panel.cmap == "viridis_r":  # label depth over black
            ax.imshow(np.zeros_like(panel.image), cmap="gray", vmin=0, vmax=1, origin="lower", extent=extent)
        shown = ax.imshow(panel.image, cmap=panel.cmap, vmin=panel.window[0], vmax=panel.window[1], origin="lower",
                          extent=extent, interpolation="nearest")
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("x (mm, patient left ->)")
        if panel.cmap == "gray":
            fig.colorbar(shown, ax=ax, shrink=0.7)
    axes[0].set_ylabel("z (mm)")
    fig.suptitle(
        f"{truth.get('case') or 'phantom'}  seed {truth['seed']}  shape {tuple(truth['shape_zyx'])}  spacing "
        f"{tuple(round(s, 2) for s in truth['spacing_xyz'])} mm  branches {truth['n_branches']} "
        f"(generations 0-{truth['max_generation']}, labelled 0-{truth['max_labelled_generation']})",
        fontsize=11,
    )
    buffer = pyio.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return writing.write_bytes(path, buffer.getvalue())
