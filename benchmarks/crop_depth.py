"""How deep do the phantom crops reach? Labelled branches and deepest labelled generation of many case seeds.

Grows each case's tree and chooses its crop exactly as ``generate_phantom`` does (``grow_case``), without
rendering the CT, and counts the crops below the deep-crop target (DEEP_CROP_MIN_LABELLED labelled branches,
generation DEEP_CROP_MIN_GENERATION) and the trees grown again to reach it.

    python benchmarks/crop_depth.py --cases 300 --shape 160 192 192 --spacing 0.7 0.7 0.7 --crop lobe
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from common import cpu_name

from nnunet_airway.argument_types import int_at_least, positive_float
from nnunet_airway.phantoms import generate


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int_at_least(1), default=300, help="case seeds case_seed(--seed, i)")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument("--shape", type=int_at_least(16), nargs=3, metavar=("Z", "Y", "X"),
                        default=list(generate.DEFAULT_SHAPE_ZYX))
    parser.add_argument("--spacing", type=positive_float("mm"), nargs=3, metavar=("X", "Y", "Z"),
                        default=list(generate.DEFAULT_CROP_SPACING))
    parser.add_argument("--crop", choices=("lobe", "lung"), default="lobe")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    shape, spacing = tuple(args.shape), tuple(args.spacing)
    start = time.perf_counter()
    depths, attempts, below = [], Counter(), []
    for index in range(args.cases):
        seed = generate.case_seed(args.seed, index)
        grown = generate.grow_case(seed, shape, spacing, args.crop, "clinical")
        depth = generate.crop_depth(grown.branches, grown.crop)
        depths.append(depth)
        attempts[grown.attempt] += 1
        if grown.deep and not generate.crop_is_deep_enough(*depth):
            below.append((index, *depth))
    seconds = time.perf_counter() - start
    labelled = np.array([d[0] for d in depths])
    deepest = np.array([d[1] for d in depths])
    print(f"{args.cases} {args.crop} crops of {shape} voxels at {spacing} mm, case_seed({args.seed}, i); "
          f"{cpu_name()}, {seconds:.0f} s ({seconds / args.cases:.2f} s per case, no rendering)")
    print(f"deep-crop target ({generate.DEEP_CROP_MIN_LABELLED} labelled branches, generation "
          f"{generate.DEEP_CROP_MIN_GENERATION}): "
          f"{'applies' if generate.holds_deep_crops(shape, spacing) else 'does not apply (box too small)'}")
    print(f"labelled branches: min {labelled.min()}, 5th percentile {np.percentile(labelled, 5):.0f}, "
          f"median {np.median(labelled):.0f}, max {labelled.max()}")
    print(f"deepest labelled generation: min {deepest.min()}, median {np.median(deepest):.0f}, max {deepest.max()}")
    print("trees grown per case: " + ", ".join(f"{attempt + 1}: {n}" for attempt, n in sorted(attempts.items())))
    print(f"below the target: {len(below)}" + (f" {below}" if below else ""))


if __name__ == "__main__":
    main()
