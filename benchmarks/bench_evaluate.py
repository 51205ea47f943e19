"""Benchmark: time and peak memory of ``evaluate_case`` on one full-size (512 x 512 x 400) case.

Goal (issues 6 and 15): <= 5 s and <= 1.5 GB per case on one core with every metric. The case is a
phantom from ``nnunet_airway.phantoms``; the prediction is the reference shifted by one voxel along x
plus a leak and an island, so every metric is non-trivial. Each measurement runs in a fresh
single-threaded process, the versions interleaved; the fastest of --repeats is reported with its user and
system time (the kernel's: page faults of fresh arrays). The previous version (``--previous``, a git
revision, default main) is extracted with ``git archive`` into a temporary folder and measured in the same
run on the same case.

    python benchmarks/bench_evaluate.py [--shape 400 512 512] [--seed 0] [--repeats 1] [--previous main] [--parse LABEL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from common import cpu_name, peak_rss_bytes  # noqa: E402


def make_case(folder: Path, shape: tuple[int, int, int], seed: int) -> str:
    from nnunet_airway.phantoms.generate import generate_phantom
    from nnunet_airway.writing import write_image

    phantom = generate_phantom(seed, shape_zyx=shape)
    label, geometry = phantom.label, phantom.geometry
    source = f"phantom seed {seed} ({phantom.truth['n_labelled_branches']} labelled branches)"
    prediction = np.roll(label, 1, axis=2)
    coords = np.argwhere(label)
    z, y, x = coords[np.argmax(coords[:, 0])]
    prediction[max(z - 6, 0):z + 6, max(y - 6, 0):y + 6, max(x - 6, 0):x + 6] = 1  # a leak at a deep branch
    prediction[:4, :4, :4] = 1  # an island in a corner: one more component for the topology keys
    write_image(folder / "reference.nii.gz", label, geometry)
    write_image(folder / "prediction.nii.gz", prediction, geometry)
    return f"{source}; {int(label.sum())} airway voxels"


DETAIL_KEYS = ("BD", "TD", "TPR", "FPR", "DSC", "clDice", "branches_reference", "loops_broken", "spurs_pruned",
               "IoU", "DBR", "leakage_count", "components_prediction", "betti1_error")


def _measure(task: str, folder: str, root: str, queue: multiprocessing.Queue) -> None:
    try:
        _measure_in_this_process(task, folder, root, queue)
    except BaseException as error:  # the parent waits on the queue: tell it instead of leaving it hanging
        queue.put({"error": f"{type(error).__name__}: {error}"})
        raise


def _measure_in_this_process(task: str, folder: str, root: str, queue: multiprocessing.Queue) -> None:
    import tracemalloc

    sys.path.insert(0, root)  # the version to measure: this checkout or the extracted previous one
    import nnunet_airway.evaluation.runner
    from nnunet_airway.image_io import read_image

    measured = Path(nnunet_airway.evaluation.runner.__file__).resolve()
    if Path(root).resolve() not in measured.parents:
        raise SystemExit(f"measuring {root} imported {measured} instead; the comparison would be void")

    try:  # as the evaluator's commands run (versions that have it: small pages, evaluation/memory_pages.py)
        from nnunet_airway.evaluation.memory_pages import prefer_small_pages
    except ImportError:
        pass
    else:
        prefer_small_pages()
    rss_before = peak_rss_bytes() / 2**20
    start, cpu_start, usage = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    if task.startswith("evaluate"):
        from nnunet_airway.evaluation.runner import evaluate_case

        tracemalloc.start()
        options = ({"protocol": task.removeprefix("evaluate_")} if task in ("evaluate_atm22", "evaluate_atm26")
                   else {"cl_dice": task != "evaluate_no_cldice"})
        metrics = evaluate_case(Path(folder) / "prediction.nii.gz", Path(folder) / "reference.nii.gz", **options)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        detail = {k: metrics[k] for k in DETAIL_KEYS if k in metrics}
    elif task == "parse":  # folder: a label file; the skeleton and parsing written into a fresh folder beside
        from nnunet_airway.evaluation.parse_cli import write_parsings

        tracemalloc.start()
        with tempfile.TemporaryDirectory() as out:
            write_parsings({"case": Path(folder)}, Path(out), progress=False, report=False)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        detail = {}
    else:
        from skimage.morphology import skeletonize

        label, _ = read_image(Path(folder) / "reference.nii.gz")
        start, cpu_start = time.perf_counter(), time.process_time()  # the skeleton alone
        usage = resource.getrusage(resource.RUSAGE_SELF)
        tracemalloc.start()
        skeletonize(label > 0)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        detail = {}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak_rss_mb = peak_rss_bytes() / 2**20
    queue.put({"seconds": seconds, "cpu_seconds": cpu_seconds, "user_seconds": after.ru_utime - usage.ru_utime,
               "system_seconds": after.ru_stime - usage.ru_stime, "peak_rss_mb": peak_rss_mb, "rss_before_mb": rss_before,
               "traced_peak_mb": traced_peak / 2**20, "detail": detail})


def _make(folder: str, shape: tuple[int, int, int], seed: int, root: str, queue: multiprocessing.Queue) -> None:
    sys.path.insert(0, root)
    queue.put(make_case(Path(folder), shape, seed))


LAYERS = ("trainers", "evaluation", "dataset_conversion")
TASKS = {"evaluate": "all metrics (paper protocol)", "evaluate_no_cldice": "all but clDice",
         "evaluate_atm22": "all metrics (protocol atm22)", "evaluate_atm26": "protocol atm26, reference parsed here"}


def extract_revision(revision: str, into: Path) -> str:
    """``git archive REVISION`` of this repository unpacked into ``into``; returns the commit id."""
    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", revision], cwd=repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for layer in LAYERS:  # older versions kept these beside the package and mapped them into it in setup.cfg
        beside, inside = into / layer, into / "nnunet_airway" / layer
        if beside.is_dir() and not beside.is_symlink() and not inside.exists():
            beside.rename(inside)
    return commit


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
    parser.add_argument("--previous", default="main", metavar="REV",
                        help="git revision of the previous version to measure in the same run (default main)")
    parser.add_argument("--no-previous", action="store_true", help="measure this checkout only")
    parser.add_argument("--baseline", action="store_true", help="also time the Lee skeleton of the uncropped volume")
    parser.add_argument("--parse", type=Path, metavar="LABEL", default=None,
                        help="also time `nnunet-airway parse` of this label in both versions (goal: <= 10 s for an "
                             "ATM'22-size label, e.g. ../shared/data/atm22_trees/ATM_224_timi.nii.gz)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; one process per measurement, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    here = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "case"
        folder.mkdir()
        versions = {"this checkout": here}
        if not args.no_previous:
            previous = Path(tmp) / "previous"
            previous.mkdir()
            versions[f"previous ({args.previous}, {extract_revision(args.previous, previous)})"] = str(previous)
        print(f"case {tuple(args.shape)}: {in_fresh_process(_make, str(folder), tuple(args.shape), args.seed, here)}")
        tasks = dict(TASKS, **({"parse": f"parse of {args.parse.name}"} if args.parse else {}))
        measured: dict[tuple[str, str], list[dict]] = {(v, t): [] for v in versions for t in tasks}
        for _ in range(args.repeats):  # interleaved, so a busy spell of the machine falls on both versions
            for version, root in versions.items():
                for task in tasks:
                    source = str(args.parse.resolve()) if task == "parse" else str(folder)
                    measured[version, task].append(in_fresh_process(_measure, task, source, root))
        results = {}
        for version in versions:
            for task, what in tasks.items():
                runs = measured[version, task]
                failed = [run["error"] for run in runs if "error" in run]
                if failed and task in ("evaluate_atm26", "parse") and version != "this checkout":
                    print(f"{version}: no {what} ({failed[0]})")
                    continue
                if failed:
                    raise SystemExit(f"{version}: {task} failed: {failed[0]}")
                best = results[version, task] = min(runs, key=lambda r: r["cpu_seconds"])
                step = what if task == "parse" else f"evaluate_case, read both files + {what}"
                print(f"{version}: {step}: CPU {best['cpu_seconds']:.2f} s (user "
                      f"{best['user_seconds']:.2f} s, system {best['system_seconds']:.2f} s; wall "
                      f"{best['seconds']:.2f} s), peak RSS {best['peak_rss_mb']:.0f} MB (after imports "
                      f"{best['rss_before_mb']:.0f} MB), numpy peak (tracemalloc) {best['traced_peak_mb']:.0f} MB")
                if best["detail"]:
                    print(f"  metrics: {json.dumps(best['detail'])}")
        print("goal: <= 5 s and <= 1536 MB per case on one core with every metric; parse <= 10 s")
        if len(versions) == 2:
            new, old = list(versions)
            for task in tasks:
                if (old, task) not in results:
                    continue
                a, b = results[new, task], results[old, task]
                print(f"ratio this checkout / previous ({task}): CPU time {a['cpu_seconds'] / b['cpu_seconds']:.2f} "
                      f"(user {a['user_seconds'] / b['user_seconds']:.2f}), "
                      f"peak RSS {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}")
        if args.baseline:
            base = in_fresh_process(_measure, "skeleton", str(folder), here)
            print(f"baseline, Lee skeleton of the uncropped volume alone: CPU {base['cpu_seconds']:.2f} s (wall "
                  f"{base['seconds']:.2f} s), peak RSS {base['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
