"""A resumable sequence of named stages, recorded in a small JSON ledger inside the work dir.

A stage is marked done only after it returns, so an interrupted run (Ctrl-C, a crash, a full disk)
redoes the unfinished stage next time and skips the finished ones. Each stage must therefore be safe
to run again over its own partial output.
"""

from __future__ import annotations

import errno
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnunet_airway.errors import DataError
from nnunet_airway.writing import write_json


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    run: Callable[[], dict[str, Any] | None]


class Ledger:
    """``<workdir>/state.json`` (the path the pipeline gives): the settings a work dir was made with and the
    stages finished."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        settings = json.loads(json.dumps(settings))  # as it reads back from the file (tuples become lists)
        self.state: dict[str, Any] = {"settings": settings, "stages": {}}
        if path.exists():
            previous = json.loads(path.read_text())
            if previous.get("settings") != settings:
                raise DataError(
                    f"{path}: this work dir was made with other settings ({previous.get('settings')}); "
                    "rerun with the same options or choose another --workdir"
                )
            self.state = previous

    def is_done(self, name: str) -> bool:
        return bool(self.state["stages"].get(name, {}).get("done"))

    def result(self, name: str) -> dict[str, Any]:
        return self.state["stages"].get(name, {}).get("result", {})

    def mark_done(self, name: str, result: dict[str, Any] | None, seconds: float) -> None:
        self.state["stages"][name] = {"done": True, "seconds": round(seconds, 1), "result": result or {}}
        write_json(self.path, self.state)


def run_stages(stages: list[Stage], ledger: Ledger, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Run the stages not yet done, in order; returns seconds per stage run now."""
    timings: dict[str, float] = {}
    for index, stage in enumerate(stages, start=1):
        prefix = f"[{index}/{len(stages)}] {stage.name}"
        if ledger.is_done(stage.name):
            echo(f"{prefix}: done in an earlier run, skipped")
            continue
        echo(f"{prefix}: {stage.description}")
        start = time.perf_counter()
        try:
            result = stage.run()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DataError(
                    f"{exc.filename or ledger.path.parent}: the disk is full; free some space and rerun the "
                    "same command (finished stages are kept)"
                ) from exc
            raise
        seconds = time.perf_counter() - start
        ledger.mark_done(stage.name, result, seconds)
        timings[stage.name] = seconds
        echo(f"{prefix}: finished in {seconds:.0f} s")
    return timings
