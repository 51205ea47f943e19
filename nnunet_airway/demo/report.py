"""What the demo prints at the end: the Table-1-style summary and where every file is."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_report(pipeline, state: dict[str, Any]) -> None:
    import json

    from ..evaluation.report import format_table

    summary_path = Path(state["stages"]["evaluate"]["result"]["summary"])
    summary = json.loads(summary_path.read_text())
    print()
    print(format_table(summary, "FRAD (demo)"))
    detected = ", ".join(
        f"gen {g}: {v:.0f}%" for g, v in summary["mean"]["BD_by_generation"].items() if v is not None
    )
    print(f"Branches detected per generation: {detected}")
    print()
    train = state["stages"]["train"]["result"]
    rows = [
        ("phantoms (CT, labels, truth, previews)", pipeline.phantom_dir),
        ("nnU-Net raw data set", pipeline.raw_dir),
        ("trained model (nnU-Net results)", pipeline.model_dir),
        ("final checkpoint", train["checkpoint"]),
        ("held-out predictions", pipeline.prediction_dir),
        ("metrics (summary.json)", summary_path),
        ("rendered trees (green detected, red missed, blue false positives)", pipeline.evaluation_dir / "renders"),
        ("nnU-Net's console output", pipeline.log),
    ]
    print("Where everything is:")
    for what, where in rows:
        print(f"  {what}: {where}")
