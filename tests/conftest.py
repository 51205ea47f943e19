"""Shared test settings: keep torch and numpy single-threaded so tests are fast and repeatable on 2 cores; one
wheel of this checkout for the tests that install it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
