"""Two processes under DDP (gloo, on the CPU), as ``nnUNetv2_train -num_gpus 2`` runs the trainers: one step's
gradients equal the single-process step on the union of both ranks' batches, for every airway trainer, and the
loss components in loss_components.json are the means over every rank's iterations, not rank 0's alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


def run_single(trainer: str, tmp_path: Path, world_size: int = 2) -> None:
    env = {**os.environ, "nnUNet_results": str(tmp_path / "results_single"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), trainer, "single", str(world_size), "-", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


# one trainer per code path DDP could get wrong: FR's autograd Function with the summed distillation term (FR+AD
# holds what Baseline, FR and AD run alone), the other two recalibration modules, the mean reduction, deep
# supervision and each skeleton loss; a distillation weight or the optimiser changes no reduction
DDP_TRAINERS = ["nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayCSE", "nnUNetTrainerAirwayPE",
                "nnUNetTrainerAirwayAD_mean", "nnUNetTrainerAirwayFRAD_DS", "nnUNetTrainerAirwayFRAD_SkelRecall",
                "nnUNetTrainerAirwayBaseline_clDice"]


@pytest.mark.parametrize("trainer", DDP_TRAINERS)
def test_ddp_gradients_equal_one_process_on_the_union_of_the_batches(trainer: str, tmp_path: Path) -> None:
    """FR's autograd Function, the frozen deep-supervision heads (no unused-parameter error), batch Dice and the
    distillation term: DDP's averaged gradients after one step are the single-process gradients."""
    run_ranks(trainer, tmp_path)
    run_single(trainer, tmp_path)
    single = torch.load(tmp_path / "grads_single.pt")
    # one tolerance for the whole network: a conv bias before instance norm has a gradient of rounding noise
    atol = 1e-4 * max(float(g.abs().max()) for g in single.values())
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"grads_rank{rank}.pt")
        # nnU-Net weights the coarsest deep-supervision output 1e-6 under DDP (0 in one process) so that DDP
        # sees a gradient for it; that head may differ by that much, nothing else may be missing
        for name in ddp.keys() ^ single.keys():
            assert name.startswith("decoder.seg_layers.") and float((ddp.get(name, single.get(name))).abs().max()) < atol
        for name in ddp.keys() & single.keys():
            torch.testing.assert_close(ddp[name], single[name], rtol=1e-3, atol=atol,
                                       msg=lambda m, n=name: f"{n}: {m}")


def test_batch_dice_is_taken_over_every_ranks_batch(tmp_path: Path) -> None:
    """Far from the prior, where the Dice term matters: each rank's logit gradient is world_size times the
    single-process gradient on the union (which DDP's averaging turns into the union's parameter gradient). A
    Dice per rank (no all-reduce) misses by far more than the tolerance."""
    run_ranks("nnUNetTrainerAirwayBaseline", tmp_path)
    for rank in (0, 1):
        grads = torch.load(tmp_path / f"loss_grads_rank{rank}.pt")
        torch.testing.assert_close(grads["rank"], 2 * grads["union"], rtol=1e-5, atol=1e-9)


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
