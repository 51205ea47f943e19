"""Benchmark scripts run as ``python benchmarks/NAME.py``, which puts benchmarks/ first on sys.path (their
shared helpers are imported as ``common``); tests that load a script as a module do the same."""

import sys
from pathlib import Path

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)
