"""Real chest CT against phantoms: HU histograms of lung, airway lumen and airway wall, and a profile across the
trachea, as one PNG (and the numbers as JSON).

    python benchmarks/phantom_vs_real.py --image tests/data/cip_ct64/ct-64.nrrd \
        --label tests/data/cip_ct64/lm-64.nrrd --out docs/images/phantom_vs_real.png

The label may be a binary airway label or a CIP label map (airway = ChestType 2, ``(value >> 8) == 2``; its
lung regions then give the lung mask). Phantoms: whole chests on the real CT's grid (ideal and clinical
scanner models), a phantom rendered around the real CT's own airway label on its grid (``phantoms
--from-label``: the same anatomy, the phantoms' walls, vessels, lungs and scanner) and a 0.7 mm lobe crop.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import png_bytes
from matplotlib.figure import Figure
from scipy import ndimage

from nnunet_airway.image_io import read_image
from nnunet_airway.label_phantoms import phantom_from_label
from nnunet_airway.phantoms.generate import generate_phantom
from nnunet_airway.writing import write_bytes, write_image, write_json

BINS = np.arange(-1050, 301, 10)


def _body(ct: np.ndarray) -> np.ndarray:
    """Voxels inside the body outline, slice by slice (the airways open the lungs to the top face in 3-D)."""
    tissue = ndimage.binary_opening(ct > -500, iterations=2)
    return np.stack([ndimage.binary_fill_holes(plane) for plane in tissue])


def _masks_of_real(label: np.ndarray, ct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(airway, lung) masks: CIP label maps carry both; for a binary label the lung is air-like body voxels."""
    if label.max() > 255:
        airway = (label >> 8) == 2
        lung = ((label & 255) > 0) & ~airway
    else:
        airway = label > 0
        lung = _body(ct) & (ct < -500) & ~ndimage.binary_dilation(airway, iterations=2)
    return airway, lung


def _regions(ct: np.ndarray, airway: np.ndarray, lung: np.ndarray) -> dict[str, np.ndarray]:
    core = ndimage.binary_erosion(airway)
    lumen = ct[core] if core.sum() >= 20 else ct[airway]
    wall = ndimage.binary_dilation(airway) & ~airway
    return {"lung": ct[lung & ~wall], "lumen": lumen, "wall": ct[wall]}


def _trachea_profile(ct: np.ndarray, airway: np.ndarray, spacing_xyz) -> tuple[np.ndarray, np.ndarray]:
    """HU along x through the airway's centroid on the slice a quarter of the way down the airway (mm from it)."""
    zs = np.flatnonzero(airway.any(axis=(1, 2)))
    k = int(zs[int(0.75 * (len(zs) - 1))])  # z increases superiorly: 3/4 up the airway's extent
    jj, ii = np.nonzero(airway[k])
    j, i = int(round(jj.mean())), int(round(ii.mean()))
    half = int(np.ceil(40.0 / spacing_xyz[0]))
    xs = np.arange(max(i - half, 0), min(i + half + 1, ct.shape[2]))
    return (xs - i) * spacing_xyz[0], ct[k, j, xs].astype(float)


def _around_label(airway: np.ndarray, geometry, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(CT, label) of a phantom rendered around ``airway`` (bool, zyx) on its grid; the label equals ``airway``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(Path(tmp) / "airway.nii.gz", airway.astype(np.uint8), geometry)
        phantom = phantom_from_label(path, seed)
    return phantom.ct, phantom.label.astype(bool)


def _summary(values: np.ndarray) -> dict[str, float]:
    p = np.percentile(values, [5, 25, 50, 75, 95])
    return {"n": int(values.size), **{f"p{q}": round(float(v), 1) for q, v in zip((5, 25, 50, 75, 95), p, strict=True)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--out", required=True, help="PNG path; the numbers go next to it as .json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ct, geometry = read_image(args.image)
    label, _ = read_image(args.label)
    airway, lung = _masks_of_real(label, ct)
    spacing = tuple(float(s) for s in geometry.spacing)
    sets: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, tuple]] = {"real CT": (ct, airway, lung, spacing)}
    for scanner in ("ideal", "clinical"):
        phantom = generate_phantom(args.seed, ct.shape, spacing, scanner=scanner)
        lungs = phantom.ct < -500
        lungs &= ~ndimage.binary_dilation(phantom.label.astype(bool), iterations=2)
        sets[f"phantom, {scanner}"] = (phantom.ct, phantom.label.astype(bool), lungs & _body(phantom.ct), spacing)
    around_ct, around_airway = _around_label(airway, geometry, args.seed)
    around_lung = (around_ct < -500) & ~ndimage.binary_dilation(around_airway, iterations=2) & _body(around_ct)
    sets["around this label, clinical"] = (around_ct, around_airway, around_lung, spacing)
    crop = generate_phantom(args.seed, (128, 160, 160), (0.7, 0.7, 0.7), crop="lobe")
    crop_lung = (crop.ct < -500) & ~ndimage.binary_dilation(crop.label.astype(bool), iterations=2)
    crop_set = (crop.ct, crop.label.astype(bool), crop_lung, (0.7, 0.7, 0.7))

    figure = Figure(figsize=(20, 8.5), layout="constrained")
    axes = figure.subplots(2, 5)
    numbers: dict[str, dict] = {}
    colours = {"real CT": "black", "phantom, ideal": "tab:blue", "phantom, clinical": "tab:red",
               "around this label, clinical": "tab:purple", "lobe crop 0.7 mm, clinical": "tab:green"}
    for name, (volume, air_mask, lung_mask, _) in {**sets, "lobe crop 0.7 mm, clinical": crop_set}.items():
        regions = _regions(volume, air_mask, lung_mask)
        numbers[name] = {region: _summary(values) for region, values in regions.items()}
        for ax, region in zip(axes[0, :3], ("lung", "lumen", "wall"), strict=True):
            ax.hist(regions[region], bins=BINS, density=True, histtype="step", color=colours[name], label=name)
    for ax, region in zip(axes[0, :3], ("lung", "lumen", "wall"), strict=True):
        ax.set_title(f"{region} HU")
        ax.set_xlabel("HU")
    axes[0, 0].legend(fontsize=8)
    axes[0, 4].axis("off")
    axes[0, 3].axis("off")
    axes[0, 3].text(0.0, 1.0, "medians (HU)\n" + "\n".join(
        f"{name}:\n  lung {v['lung']['p50']}, lumen {v['lumen']['p50']}, wall {v['wall']['p50']}"
        for name, v in numbers.items()), va="top", fontsize=9, family="monospace")
    for ax, (name, (volume, air_mask, _, sp)) in zip(axes[1, :4], sets.items(), strict=True):
        x, profile = _trachea_profile(volume, air_mask, sp)
        ax.plot(x, profile, color=colours[name])
        ax.set_title(f"profile across the trachea: {name}")
        ax.set_xlabel("mm from the airway centre (x)")
        ax.set_ylim(-1050, 150)
    x, profile = _trachea_profile(*crop_set[:2], crop_set[3])
    axes[1, 4].plot(x, profile, color=colours["lobe crop 0.7 mm, clinical"])
    axes[1, 4].set_title("profile across the crop's root bronchus")
    axes[1, 4].set_xlabel("mm from the airway centre (x)")
    axes[1, 4].set_ylim(-1050, 150)
    figure.suptitle(f"{Path(args.image).name} ({'x'.join(str(n) for n in ct.shape)} voxels, "
                    f"{' x '.join(f'{s:.2f}' for s in spacing)} mm) against phantoms on its grid and a lobe crop")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(out, png_bytes(figure, dpi=90))
    write_json(out.with_suffix(".json"), numbers, indent=1)
    print(json.dumps({k: {r: v[r]["p50"] for r in v} for k, v in numbers.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
