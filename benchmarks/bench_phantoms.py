"""Benchmark: one 160 x 192 x 192 phantom on one core; goal <= 5 s (issue 2).

Prints the best of ``--repeats`` timings, its ratio to the goal, and a machine baseline measured in the
same run (Gaussian noise plus a Gaussian filter over the same volume) so the figure can be compared
between machines: ``phantom / baseline`` does not depend much on the CPU.

    python benchmarks/bench_phantoms.py [--repeats 3] [--shape 160 192 192]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from common import cpu_name  # noqa: E402
from scipy import ndimage  # noqa: E402

from nnunet_airway.phantoms.generate import generate_phantom  # noqa: E402

GOAL_S = 5.0


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 192, 192], metavar=("Z", "Y", "X"))
    args = parser.parse_args()
    shape = tuple(args.shape)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for everything
    generate_phantom(0, (48, 64, 64))  # warm-up: imports and caches

    def baseline() -> None:
        ndimage.gaussian_filter(np.random.default_rng(0).standard_normal(shape, dtype=np.float32), 1.0)

    base = best_time(baseline, args.repeats)
    seconds = best_time(lambda: generate_phantom(1, shape), args.repeats)
    phantom = generate_phantom(1, shape)
    print(f"CPU: {cpu_name()} (1 core)")
    print(f"phantom {shape}: {phantom.truth['n_branches']} branches, {phantom.truth['n_labelled_branches']} labelled")
    print(f"time: {seconds:.2f} s (best of {args.repeats}); goal {GOAL_S:.1f} s; ratio to goal {seconds / GOAL_S:.2f}")
    print(f"baseline (noise + gaussian_filter on the same volume): {base:.2f} s; phantom / baseline {seconds / base:.1f}")


if __name__ == "__main__":
    main()
