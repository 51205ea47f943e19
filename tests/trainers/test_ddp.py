"""Two processes under DDP (gloo, on the CPU): the loss components in loss_components.json are the means over
every rank's iterations, as nnU-Net averages its own loss, not rank 0's alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_airway.trainers.loss_components import read_loss_components

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "support" / "ddp_worker.py"


def run_ranks(trainer: str, tmp_path: Path, world_size: int = 2) -> list[dict]:
    """Start one worker process per rank; their JSON reports, rank order."""
    env = {**os.environ, "nnUNet_results": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    store = tmp_path / "store"
    processes = [subprocess.Popen([sys.executable, str(WORKER), trainer, str(rank), str(world_size), str(store),
                                   str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for rank in range(world_size)]
    logs = [process.communicate(timeout=300)[0] for process in processes]
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log[-3000:]
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world_size)]


@pytest.mark.parametrize("trainer", ["nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayFRAD_DS"])
def test_loss_components_are_averaged_over_the_ranks(trainer: str, tmp_path: Path) -> None:
    ranks = run_ranks(trainer, tmp_path)
    (record,) = read_loss_components(ranks[0]["output_folder"])
    assert record["epoch"] == 0
    for name in ("segmentation", "distillation", "attention_entropy"):
        every_iteration = [np.asarray(output[name]) for rank in ranks for output in rank["outputs"]]
        rank0_alone = np.mean([np.asarray(output[name]) for output in ranks[0]["outputs"]], axis=0)
        both = np.mean(every_iteration, axis=0)
        np.testing.assert_allclose(record[name], both, rtol=1e-6)
        assert not np.allclose(both, rank0_alone, rtol=1e-6, atol=0), f"{name}: the ranks' batches must differ"
