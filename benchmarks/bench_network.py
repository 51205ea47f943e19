"""Step time and peak memory of FRADUNet variants relative to the plain U-Net (issue 3's speed/memory goal).

A step is forward + DiceFocal loss (+ alpha * attention distillation when on) + backward + Adam step, as in
training. Every (variant, setting) runs in its own subprocess so that peak memory is measured afresh, and
the plain network (recalibration=None, distillation=False) is measured in the same run as the baseline.

- CPU (always): float32, batch 2, a small patch. Step time: the fastest of ``--steps`` steps after warm-up
  (the fastest is the least disturbed by other processes on a shared machine). Memory: (a) the bytes that
  autograd keeps for backward (each storage counted once) -- deterministic and the main part of the peak;
  (b) the growth of the process's maximum resident set size over the training steps (ru_maxrss, from just
  before the first step; glibc told to unmap blocks of 1 MiB or more when freed), which is the peak of a
  whole step.
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
import resource
import subprocess
import sys
import time

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


def _saved_bytes_of_one_forward(net, loss_fn, x, target) -> int:
    """Bytes autograd keeps for backward after forward + loss (each storage once)."""
    import torch

    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _loss(net, net, loss_fn, x, target)
    return sum(storages.values())


def _loss(model, net, loss_fn, x, target):
    """The training loss; ``model`` is ``net`` or its compiled wrapper (which sets ``net.decoder_features``)."""
    logits = model(x)
    features = net.pop_decoder_features() if net.distillation else None
    return loss_fn(logits, target, features)


def worker(args: argparse.Namespace) -> dict:
    """One variant in one setting; returns the measurements."""
    import torch

    from nnunet_airway import DiceFocalLoss, FRADUNet

    torch.manual_seed(0)
    device = torch.device(args.device)
    patch = tuple(args.patch)
    net = FRADUNet(1, 2, patch, args.widths, (1, 2, 2, 2, 2), **VARIANTS[args.variant]).to(device)
    loss_fn = DiceFocalLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.randn(args.batch, 1, *patch, device=device)
    target = (x > 1.0).float()
    cuda = device.type == "cuda"
    model = torch.compile(net) if args.compile else net
    scaler = torch.amp.GradScaler("cuda") if cuda else None

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            loss = _loss(model, net, loss_fn, x, target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    result: dict = {}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if not cuda:
        result["saved_bytes"] = _saved_bytes_of_one_forward(net, loss_fn, x, target)
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result["step_s"] = min(times) if not cuda else sorted(times)[len(times) // 2]
    if cuda:
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        result["rss_growth_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    return result


def run_variant(variant: str, device: str, patch, widths, batch: int, steps: int, warmup: int,
                compile_: bool) -> dict:
    command = [sys.executable, __file__, "--worker", "--variant", variant, "--device", device, "--batch", str(batch),
               "--steps", str(steps), "--warmup", str(warmup), "--patch", *map(str, patch),
               "--widths", *map(str, widths)] + (["--compile"] if compile_ else [])
    # glibc then returns every block of 1 MiB or more to the system when freed, so that the maximum resident
    # set size follows the live tensors instead of the allocator's cache
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="1048576")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} on {device} failed:\n{done.stderr[-3000:]}")
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
    parser.add_argument("--patch", nargs=3, type=int, default=[16, 64, 64], help="CPU patch (D H W)")
    parser.add_argument("--widths", nargs=5, type=int, default=list(WIDTHS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="plain", help=argparse.SUPPRESS)
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
        print(f"CPU: {_cpu_name()}, {torch.get_num_threads()} threads, float32, batch {args.batch}, "
              f"widths {args.widths}, patch {args.patch}")
        results = {v: run_variant(v, "cpu", args.patch, args.widths, args.batch, args.steps, args.warmup, False)
                   for v in cpu_variants}
        print_table("CPU (eager)", results, ["saved_bytes", "rss_growth_bytes"])
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        print(f"\nGPU: {torch.cuda.get_device_name()}, fp16 autocast, batch {args.batch}, widths {args.widths}")
        for patch in CUDA_PATCHES:
            for compile_ in (False, True):
                results = {v: run_variant(v, "cuda", patch, args.widths, args.batch, max(args.steps, 10),
                                          max(args.warmup, 3), compile_) for v in cuda_variants}
                mode = "compiled" if compile_ else "eager"
                print_table(f"CUDA patch {'x'.join(map(str, patch))} ({mode})", results, ["peak_bytes"])
    elif args.device == "auto":
        print("\nno CUDA device: GPU figures not measured")
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
