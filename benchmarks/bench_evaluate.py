"""Benchmark: time and peak memory of ``evaluate_case`` on one full-size (512 x 512 x 400) case.

Goal (issue 6): <= 5 s and <= 1.5 GB per case on one core. The case is a phantom from
``nnunet_airway.phantoms``; the prediction is the reference shifted by one voxel along x plus a leak, so every metric is non-trivial.
Each measurement runs in a fresh single-threaded process; the baseline, measured in the same run, is
the Lee skeleton of the uncropped volume, the step a whole-volume implementation starts with.

    python benchmarks/bench_evaluate.py [--shape 400 512 512] [--seed 0] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from common import cpu_name, peak_rss_bytes  # noqa: E402


def make_case(folder: Path, shape: tuple[int, int, int], seed: int) -> str:
    from nnunet_airway.image_io import write_image
    from nnunet_airway.phantoms.generate import generate_phantom

    phantom = generate_phantom(seed, shape_zyx=shape)
    label, geometry = phantom.label, phantom.geometry
    source = f"phantom seed {seed} ({phantom.truth['n_labelled_branches']} labelled branches)"
    prediction = np.roll(label, 1, axis=2)
    coords = np.argwhere(label)
    z, y, x = coords[np.argmax(coords[:, 0])]
    prediction[max(z - 6, 0):z + 6, max(y - 6, 0):y + 6, max(x - 6, 0):x + 6] = 1  # a leak at a deep branch
    write_image(folder / "reference.nii.gz", label, geometry)
    write_image(folder / "prediction.nii.gz", prediction, geometry)
    return f"{source}; {int(label.sum())} airway voxels"


def _measure(task: str, folder: str, queue: multiprocessing.Queue) -> None:
    import tracemalloc

    from nnunet_airway.image_io import read_image

    rss_before = peak_rss_bytes() / 2**20
    start, cpu_start = time.perf_counter(), time.process_time()
    if task.startswith("evaluate"):
        from nnunet_airway.evaluation.runner import evaluate_case

        tracemalloc.start()
        metrics = evaluate_case(Path(folder) / "prediction.nii.gz", Path(folder) / "reference.nii.gz",
                                cl_dice=task == "evaluate")
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        detail = {k: metrics[k] for k in ("BD", "TD", "TPR", "FPR", "DSC", "clDice", "branches_reference",
                                          "loops_broken", "spurs_pruned")}
    else:
        from skimage.morphology import skeletonize

        label, _ = read_image(Path(folder) / "reference.nii.gz")
        start, cpu_start = time.perf_counter(), time.process_time()  # the skeleton alone
        tracemalloc.start()
        skeletonize(label > 0)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        detail = {}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak_rss_mb = peak_rss_bytes() / 2**20
    queue.put({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak_rss_mb, "rss_before_mb": rss_before,
               "traced_peak_mb": traced_peak / 2**20, "detail": detail})


def _make(folder: str, shape: tuple[int, int, int], seed: int, queue: multiprocessing.Queue) -> None:
    queue.put(make_case(Path(folder), shape, seed))


def in_fresh_process(target, *args) -> object:  # noqa: ANN001
    """Run ``target(*args, queue)`` in a new interpreter (so peak RSS is its own) and return what it puts."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(400, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="skip the whole-volume skeleton baseline")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; one process per measurement, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"case {tuple(args.shape)}: {in_fresh_process(_make, str(folder), tuple(args.shape), args.seed)}")
        results = {}
        for task, what in (("evaluate", "all metrics"), ("evaluate_no_cldice", "all but clDice")):
            runs = [in_fresh_process(_measure, task, str(folder)) for _ in range(args.repeats)]
            best = results[task] = min(runs, key=lambda r: r["cpu_seconds"])
            print(f"evaluate_case, read both files + {what}: CPU {best['cpu_seconds']:.2f} s (wall "
                  f"{best['seconds']:.2f} s), peak RSS {best['peak_rss_mb']:.0f} MB (after imports "
                  f"{best['rss_before_mb']:.0f} MB), numpy peak (tracemalloc) {best['traced_peak_mb']:.0f} MB")
            print(f"  metrics: {json.dumps(best['detail'])}")
        print("  goal: <= 5 s and <= 1536 MB per case on one core")
        if not args.no_baseline:
            base = in_fresh_process(_measure, "skeleton", str(folder))
            print(f"baseline, Lee skeleton of the uncropped volume alone: CPU {base['cpu_seconds']:.2f} s (wall "
                  f"{base['seconds']:.2f} s), peak RSS {base['peak_rss_mb']:.0f} MB")
            full = results["evaluate"]
            print(f"ratio evaluate_case (all metrics) / baseline: CPU time {full['cpu_seconds'] / base['cpu_seconds']:.2f}, "
                  f"peak RSS {full['peak_rss_mb'] / base['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
