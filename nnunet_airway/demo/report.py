"""What the demo prints at the end: the Table-1-style summary and where every file is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_report(experiment, state: dict[str, Any]) -> None:
    """``experiment``: the finished PhantomExperiment (one trainer); ``state``: its ledger."""
    from nnunet_airway.evaluation.report import format_table

    (trainer,) = experiment.trainers
    summary_path = Path(state["stages"]["evaluate"]["result"]["summary"])
    summary = json.loads(summary_path.read_text())
    print()
    print(format_table(summary, "FR + AD (demo)"))
    # absolute generations (trachea = 0): the evaluator's own count from the root is absolute on whole-chest
    # phantoms; crops carry BD_by_absolute_generation from their truth sidecars
    by_generation = summary["mean"].get("BD_by_absolute_generation") or summary["mean"]["BD_by_generation"]
    detected = ", ".join(f"gen {g}: {v:.0f}%" for g, v in by_generation.items() if v is not None)
    print(f"Branches detected per airway generation (trachea = 0): {detected}")
    print()
    train = state["stages"]["train"]["result"]
    rows = [
        ("phantoms (CT, labels, truth JSON, previews)", experiment.phantom_dir),
        ("nnU-Net raw data set", experiment.raw_dir),
        ("trained model", experiment.model_dir(trainer)),
        ("final checkpoint", train["checkpoint"]),
        ("held-out predictions", experiment.prediction_dir(trainer)),
        ("metrics", summary_path),
        ("pictures (green detected, red missed, blue false positive)", experiment.evaluation_dir(trainer) / "renders"),
        ("3-D meshes (CASE.ply, for 3D Slicer / ParaView) and 3-D pictures (CASE_3d.png)",
         experiment.evaluation_dir(trainer) / "meshes"),
        ("attention maps of the decoder stages (CASE.png, as the paper's Fig. 4)",
         experiment.evaluation_dir(trainer) / "attention"),
        ("nnU-Net's console output", experiment.log),
    ]
    print("Where everything is:")
    for what, where in rows:
        print(f"  {what}: {where}")
