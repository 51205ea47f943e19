"""Shared test settings: keep torch and numpy single-threaded so tests are fast and repeatable on 2 cores; one
wheel of this checkout for the tests that install it; one tiny ``nnunet-airway demo`` run for the tests of the
demo and of the scripts that score its model."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnunet_airway.demo.nnunet_runner import NNUNET_FOLDER_VARIABLES

os.environ.setdefault("OMP_NUM_THREADS", "1")

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
