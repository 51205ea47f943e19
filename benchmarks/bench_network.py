"""Step time and peak memory of FRADUNet variants relative to the plain U-Net (issue 3's speed/memory goal).

A step is forward + DiceFocal loss (+ 0.1 x attention distillation when on) + backward + Adam step, as in
training. The plain network (no recalibration, no distillation term) is measured in the same run as the
baseline; memory is always measured in a fresh subprocess per variant.

- CPU (always): float32, batch 2, a small patch, one thread. Step time: the CPU time of the thread (not the
  wall clock, which other processes on a shared machine disturb), all variants in one process taking one
  step each in turn, the smallest of ``--steps`` rounds after warm-up. Memory: (a) the bytes that
  autograd keeps for backward (each storage counted once) -- deterministic and the main part of the peak;
  (b) the growth of the maximum resident set size (ru_maxrss) over the first training step, in a separate
  process with glibc told to unmap blocks of 1 MiB or more when freed: the peak of a whole step.
- CUDA (when present): fp16 autocast with a GradScaler, batch 2, widths 32-64-128-256-320, patches
  64x224x304 and 128^3, eager and torch.compile'd (nnU-Net compiles the network, not the loss). Memory:
  ``torch.cuda.max_memory_allocated`` over the measured steps (parameters and optimizer state included).

Goal: FR+AD <= 1.15x step time and <= 1.25x peak memory of the plain network.

    python benchmarks/bench_network.py                 # CPU, then CUDA if available
    python benchmarks/bench_network.py --device cpu --variants plain FR+AD
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import cpu_name, peak_rss_bytes

VARIANTS: dict[str, dict] = {
    "plain": dict(recalibration=None, distillation=False),
    "FR+AD": dict(recalibration="fr", distillation=True),
    "FR+AD direct": dict(recalibration="fr", distillation=True, memory_efficient=False),
    "FR": dict(recalibration="fr", distillation=False),
    "AD": dict(recalibration=None, distillation=True),
    "PE": dict(recalibration="pe", distillation=False),
    "cSE": dict(recalibration="cse", distillation=False),
}
CUDA_VARIANTS = ["plain", "FR+AD", "FR+AD direct"]
CUDA_PATCHES = [(64, 224, 304), (128, 128, 128)]
WIDTHS = (32, 64, 128, 256, 320)


def _saved_bytes_of_one_forward(net, loss_fn, x, target, distillation: bool) -> int:
    """Bytes autograd keeps for backward after forward + loss (each storage once)."""
    import torch

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _loss(net, loss_fn, x, target, distillation)
    return sum(storages.values())


def _loss(model, loss_fn, x, target, distillation: bool):
    """The training loss as the trainers compute it; ``model`` is the network or its compiled wrapper."""
    if not distillation:
        return loss_fn.segmentation(model(x), target)
    logits, features = model(x, return_decoder_features=True)
    return loss_fn(logits, target, features)


def make_step(variant: str, args: argparse.Namespace):
    """(network, loss, input, target, step function) for one variant; step = forward, loss, backward, Adam."""
    import torch

    from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation
    from nnunet_airway.model.unet import FRADUNet

    torch.manual_seed(0)
    device = torch.device(args.device)
    patch = tuple(args.patch)
    options = dict(VARIANTS[variant])
    distillation = options.pop("distillation")  # a loss setting: the network is the same either way
    net = FRADUNet(1, 2, patch, args.widths, (1, 2, 2, 2, 2), **options).to(device)
    loss_fn = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.randn(args.batch, 1, *patch, device=device)
    target = (x > 1.0).float()
    cuda = device.type == "cuda"
    model = torch.compile(net) if args.compile else net
    scaler = torch.amp.GradScaler("cuda") if cuda else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            loss = _loss(model, loss_fn, x, target, distillation)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return net, loss_fn, x, target, step


def worker(args: argparse.Namespace) -> dict:
    """Measurements of the variants in ``args.variants`` (one unless timing on CPU), keyed by variant."""
    import torch

    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.measure == "memory":
        (variant,) = args.variants
        net, loss_fn, x, target, step = make_step(variant, args)
        distillation = VARIANTS[variant]["distillation"]
        rss_before = peak_rss_bytes()
        saved = _saved_bytes_of_one_forward(net, loss_fn, x, target, distillation)
        step()
        rss_growth = peak_rss_bytes() - rss_before
        return {variant: {"saved_bytes": saved, "rss_growth_bytes": rss_growth}}
    if args.device == "cpu":
        # all variants in one process, one step of each in turn: a disturbance from other processes then hits
        # every variant alike; the thread's CPU time, smallest over the rounds
        steps = {variant: make_step(variant, args)[-1] for variant in args.variants}
        times: dict[str, list[float]] = {variant: [] for variant in args.variants}
        for round_ in range(args.warmup + args.steps):
            for variant, step in steps.items():
                start = time.thread_time()
                step()
                if round_ >= args.warmup:
                    times[variant].append(time.thread_time() - start)
        return {variant: {"step_s": min(values)} for variant, values in times.items()}
    (variant,) = args.variants
    step = make_step(variant, args)[-1]
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    cuda_times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        cuda_times.append(time.perf_counter() - start)
    median = sorted(cuda_times)[len(cuda_times) // 2]
    return {variant: {"step_s": median, "peak_bytes": torch.cuda.max_memory_allocated()}}


def measure(variants: list[str], device: str, patch, widths, batch: int, steps: int, warmup: int,
            compile_: bool) -> dict[str, dict]:
    """Runs the worker in fresh subprocesses. CPU: one timing all variants in turn, one per variant for
    memory. CUDA: one per variant (time and memory)."""
    base = [sys.executable, __file__, "--worker", "--device", device, "--batch", str(batch), "--steps", str(steps),
            "--warmup", str(warmup), "--patch", *map(str, patch), "--widths", *map(str, widths)]
    base += ["--compile"] if compile_ else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    results: dict[str, dict] = {variant: {} for variant in variants}
    if device == "cpu":
        for variant, values in _run([*base, "--variants", *variants], env).items():
            results[variant].update(values)
        # glibc then returns every block of 1 MiB or more to the system when it is freed, so that the maximum
        # resident set size follows the live tensors instead of the allocator's cache
        memory_env = dict(env, MALLOC_MMAP_THRESHOLD_="1048576")
        for variant in variants:
            results[variant].update(_run([*base, "--measure", "memory", "--variants", variant], memory_env)[variant])
    else:
        for variant in variants:
            results[variant].update(_run([*base, "--variants", variant], env)[variant])
    return results


def _run(command: list[str], env: dict) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(title: str, results: dict[str, dict], memory_keys: list[str]) -> None:
    base = results["plain"]
    print(f"\n{title}")
    header = f"{'variant':<14}{'step (s)':>10}{'time x':>8}" + "".join(f"{k + ' x':>22}" for k in memory_keys)
    print(header)
    for name, r in results.items():
        line = f"{name:<14}{r['step_s']:>10.4f}{r['step_s'] / base['step_s']:>8.2f}"
        for key in memory_keys:
            ratio = r[key] / base[key] if base[key] > 0 else float("nan")
            line += f"{ratio:>13.2f} ({r[key] / 2**20:>6.0f} MiB)"
        print(line)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--patch", nargs=3, type=int, default=[16, 32, 64], help="CPU patch (D H W)")
    parser.add_argument("--widths", nargs=5, type=int, default=list(WIDTHS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    import torch

    cpu_variants = args.variants or list(VARIANTS)
    cuda_variants = args.variants or CUDA_VARIANTS
    for needed in (cpu_variants, cuda_variants):
        if "plain" not in needed:
            needed.insert(0, "plain")
    if args.device in ("auto", "cpu"):
        print(f"CPU: {cpu_name()}, 1 thread, float32, batch {args.batch}, "
              f"widths {args.widths}, patch {args.patch}")
        results = measure(cpu_variants, "cpu", args.patch, args.widths, args.batch, args.steps, args.warmup, False)
        print_table("CPU (eager)", results, ["saved_bytes", "rss_growth_bytes"])
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        print(f"\nGPU: {torch.cuda.get_device_name()}, fp16 autocast, batch {args.batch}, widths {args.widths}")
        for patch in CUDA_PATCHES:
            for compile_ in (False, True):
                results = measure(cuda_variants, "cuda", patch, args.widths, args.batch, max(args.steps, 10),
                                  max(args.warmup, 3), compile_)
                mode = "compiled" if compile_ else "eager"
                print_table(f"CUDA patch {'x'.join(map(str, patch))} ({mode})", results, ["peak_bytes"])
    elif args.device == "auto":
        print("\nno CUDA device: GPU figures not measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
