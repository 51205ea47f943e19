"""Shared test settings: keep torch and numpy single-threaded so tests are fast and repeatable on 2 cores; one
wheel of this checkout for the tests that install it; one tiny ``nnunet-airway demo`` run for the tests of the
demo and of the scripts that score its model."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnunet_airway.demo.nnunet_runner import NNUNET_FOLDER_VARIABLES

os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ("pytester",)  # for the test of the slow-mark rule below

# The quick tier's rule: a test (setup + call) that takes longer than this without the ``slow`` mark fails.
# Measured on the project's 2-core AMD EPYC (2026-12-02): the slowest unmarked test took 0.63 s (call) and
# 0.50 s (setup), so 5 s leaves a CI machine that is 8 times slower room and still catches a test that
# trains, compiles or runs nnU-Net (10 s and more).
QUICK_TEST_LIMIT_S = 5.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if call.when not in ("setup", "call") or item.get_closest_marker("slow") is not None:
        return
    spent = getattr(item, "_seconds_spent", 0.0) + call.duration
    item._seconds_spent = spent
    if call.when == "call" and report.passed and spent > QUICK_TEST_LIMIT_S:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {spent:.1f} s (setup and call) without the slow mark; the quick "
                           f"tier allows {QUICK_TEST_LIMIT_S:g} s: mark it @pytest.mark.slow or make it faster")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel`` of this checkout (no dependencies), built once per session."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        check=True, capture_output=True,
    )
    (built,) = out.glob("nnunet_airway-*.whl")
    return built


@pytest.fixture()
def no_nnunet_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's folder variables unset, as on a machine where nnU-Net was never set up."""
    for name in NNUNET_FOLDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


TINY_DEMO = ["--cases", "2", "--test-cases", "1", "--shape", "64", "80", "80", "--budget-minutes", "0.05",
             "--iterations-per-epoch", "2", "--device", "cpu"]


def demo_env(**extra: str) -> dict[str, str]:
    """The user's environment without nnU-Net's folder variables (the demo puts them in its work dir)."""
    env = {key: value for key, value in os.environ.items() if key not in NNUNET_FOLDER_VARIABLES}
    env.pop("nnUNet_extTrainer", None)
    return {**env, "OMP_NUM_THREADS": "2", **extra}


def run_demo(workdir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``nnunet-airway demo`` at the tiny settings (``extra`` options override them)."""
    return subprocess.run(["nnunet-airway", "demo", "--workdir", str(workdir), *TINY_DEMO, *extra],
                          env=env or demo_env(), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def demo() -> SimpleNamespace:
    """``demo.run(workdir, *options, env=...)`` and ``demo.env(**extra)`` for the tests of the command."""
    return SimpleNamespace(run=run_demo, env=demo_env)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One finished tiny demo run: its work dir (nnU-Net folders inside) and the completed command."""
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, run_demo(workdir)


@contextlib.contextmanager
def _cpu_bfloat16() -> Iterator[None]:
    """CPU bfloat16 autocast with PyTorch's own convolution kernels instead of oneDNN's.

    oneDNN's bfloat16 Conv3d weight gradient (v3.12 in torch 2.14, AVX-512) returns NaN or inf now and then for
    small inputs with finite, ordinary values: Conv3d(8, 16, 3, padding=1) on (1, 8, 2, 2, 4) inputs gives a
    non-finite weight gradient in about a third of 300 draws, the float64 gradient being at most 21 (the test
    of this fixture shows the native kernels never do). It hits the coarse stages of the tests' small U-Nets at
    random and depends on the CPU's kernels. nnU-Net never autocasts on a CPU (only on CUDA), so users do not
    meet it; the tests run bfloat16 on CPU only to check this project's float32 islands (gates, maps, losses).
    Run the backward pass inside the block too: it chooses its kernels when it runs.
    """
    import torch

    with torch.backends.mkldnn.flags(enabled=False), torch.autocast("cpu", dtype=torch.bfloat16):
        yield


@pytest.fixture()
def cpu_bfloat16() -> Callable[[], contextlib.AbstractContextManager]:
    """``with cpu_bfloat16(): ...``: bfloat16 autocast on the CPU without oneDNN's convolutions (see _cpu_bfloat16)."""
    return _cpu_bfloat16
