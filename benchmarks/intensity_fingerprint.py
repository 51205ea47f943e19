"""The airway-lumen intensity fingerprint nnU-Net computes, for phantom sets and real CTs, beside ATM'26's.

nnU-Net normalises CT by the foreground (label) intensities of its training set: 10,000 voxels drawn per case
(nnU-Net's own DatasetFingerprintExtractor.collect_foreground_intensities, used here), pooled, then the 0.5th
and 99.5th percentiles clip and the mean and std scale. A phantom set whose fingerprint sits far from the real
one trains a network on another intensity scale than the scans it will see. Sets: whole-chest and 0.7 mm lobe
crop phantoms (clinical scanner), phantoms rendered around real labels (--from-label: the shared ATM'22 trees
resampled to ATM'26's median spacing and as 0.5 mm lobe crops, the TotalSegmentator label on its own 1.5 mm grid), the two real CTs with their labels, and
the fingerprint of 299 real ATM'26 CTs (tests/data/atm26_plans). Writes --out/intensity_fingerprint.{md,json,png}.

    python benchmarks/intensity_fingerprint.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import cpu_name, png_bytes
from matplotlib.figure import Figure
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

from nnunet_airway.argument_types import int_at_least
from nnunet_airway.image_io import read_image
from nnunet_airway.label_phantoms import phantom_from_label
from nnunet_airway.phantoms.generate import case_seed, generate_phantom
from nnunet_airway.writing import write_bytes, write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ATM26_FINGERPRINT = ROOT / "tests" / "data" / "atm26_plans" / "dataset_fingerprint.json"
ATM26_MEDIAN_SPACING = (0.78125, 0.78125, 0.5)  # x, y, z mm: the median of the fingerprint's spacings
KEYS = ("percentile_00_5", "median", "percentile_99_5", "mean", "std")


def case_samples(ct: np.ndarray, label: np.ndarray) -> np.ndarray:
    """nnU-Net's 10,000 foreground voxels of one case (with replacement, its fixed seed)."""
    samples, _ = DatasetFingerprintExtractor.collect_foreground_intensities(
        (label > 0)[None].astype(np.uint8), ct[None].astype(np.float32))
    return samples[0]


def fingerprint(samples: list[np.ndarray]) -> dict[str, float]:
    """The pooled statistics as nnU-Net's fingerprint stores them."""
    pooled = np.concatenate(samples)
    low, median, high = np.percentile(pooled, (0.5, 50.0, 99.5))
    return {"percentile_00_5": float(low), "median": float(median), "percentile_99_5": float(high),
            "mean": float(pooled.mean()), "std": float(pooled.std()), "cases": len(samples)}


def phantom_sets(cases: int, seed: int) -> dict[str, list[np.ndarray]]:
    sets: dict[str, list[np.ndarray]] = {"whole chest, clinical (160x192x192)": [], "lobe crops 0.7 mm, clinical": []}
    for i in range(cases):
        chest = generate_phantom(case_seed(seed, i), scanner="clinical")
        sets["whole chest, clinical (160x192x192)"].append(case_samples(chest.ct, chest.label))
        crop = generate_phantom(case_seed(seed, i), (96, 128, 128), (0.7, 0.7, 0.7), crop="lobe")
        sets["lobe crops 0.7 mm, clinical"].append(case_samples(crop.ct, crop.label))
    trees = sorted((SHARED / "atm22_trees").glob("*.nii.gz"))
    if trees:
        sets["from-label: ATM'22 trees at ATM'26's median spacing"] = [
            case_samples(p.ct, p.label) for p in
            (phantom_from_label(t, case_seed(seed, i), spacing_xyz=ATM26_MEDIAN_SPACING) for i, t in enumerate(trees))]
        sets["from-label: ATM'22 lobe crops 96x128x128 at 0.5 mm"] = [
            case_samples(p.ct, p.label) for p in
            (phantom_from_label(t, case_seed(seed, i), crop="lobe", shape_zyx=(96, 128, 128))
             for i, t in enumerate(trees))]
    totalseg = SHARED / "totalseg_ct15" / "airway.nii.gz"
    if totalseg.is_file():
        sets["from-label: TotalSegmentator label, 1.5 mm"] = [
            case_samples(p.ct, p.label) for p in (phantom_from_label(totalseg, case_seed(seed, i)) for i in range(3))]
    return sets


def real_sets() -> dict[str, list[np.ndarray]]:
    sets = {}
    totalseg = SHARED / "totalseg_ct15"
    if (totalseg / "ct.nii.gz").is_file():
        ct, _ = read_image(totalseg / "ct.nii.gz")
        label, _ = read_image(totalseg / "airway.nii.gz")
        sets["real: totalseg_ct15 (1.5 mm, its derived label)"] = [case_samples(ct, label)]
    cip = ROOT / "tests" / "data" / "cip_ct64"
    ct, _ = read_image(cip / "ct-64.nrrd")
    label_map, _ = read_image(cip / "lm-64.nrrd")
    sets["real: cip_ct64 (4.2 mm, CIP airway label)"] = [case_samples(ct, (label_map >> 8) == 2)]
    return sets


def markdown(rows: dict[str, dict[str, float]], header: str) -> str:
    lines = ["# Airway-lumen intensity fingerprint: phantoms against real CT", "", header, "",
             "| set | cases | 0.5th pct | median | 99.5th pct | mean | std |", "|---|---|---|---|---|---|---|"]
    for name, fp in rows.items():
        lines.append(f"| {name} | {fp.get('cases', '-')} | " + " | ".join(f"{fp[k]:.0f}" for k in KEYS) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: dict[str, dict[str, float]]) -> bytes:
    fig = Figure(figsize=(9, 0.5 * len(rows) + 1.5), layout="constrained")
    ax = fig.subplots()
    names = list(rows)[::-1]
    for y, name in enumerate(names):
        fp = rows[name]
        colour = "black" if name.startswith(("ATM'26", "real")) else "tab:red"
        ax.plot([fp["percentile_00_5"], fp["percentile_99_5"]], [y, y], color=colour, lw=2)
        ax.plot([fp["median"]], [y], "o", color=colour)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("HU of airway-label voxels: 0.5th-99.5th percentile, median (dot)")
    ax.grid(axis="x", alpha=0.3)
    return png_bytes(fig, 100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int_at_least(1), default=4, help="generated phantoms per set")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    atm26 = json.loads(ATM26_FINGERPRINT.read_text())["foreground_intensity_properties_per_channel"]["0"]
    rows: dict[str, dict[str, float]] = {"ATM'26 training set (299 real CTs, nnU-Net fingerprint)":
                                         {**{k: float(atm26[k]) for k in KEYS}, "cases": 299}}
    rows.update({name: fingerprint(samples) for name, samples in real_sets().items()})
    rows.update({name: fingerprint(samples) for name, samples in phantom_sets(args.cases, args.seed).items()})
    header = (f"nnU-Net's foreground fingerprint (10,000 label voxels per case, pooled) on {cpu_name()}, "
              f"{time.perf_counter() - start:.0f} s; phantom seeds case_seed({args.seed}, i).")
    write_bytes(args.out / "intensity_fingerprint.md", markdown(rows, header).encode())
    write_json(args.out / "intensity_fingerprint.json", {"header": header, "sets": rows})
    write_bytes(args.out / "intensity_fingerprint.png", figure(rows))
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
