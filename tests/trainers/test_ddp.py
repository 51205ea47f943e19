"""Two processes under DDP (gloo, on the CPU), as ``nnUNetv2_train -num_gpus 2`` runs the trainers: one step's
gradients equal the single-process step on the union of both ranks' batches, for one trainer per code path, and
the loss components in loss_components.json are the means over every rank's iterations, not rank 0's alone.
Every trainer runs in one launch of the ranks (and one of the single process), shared by the tests."""

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


def run_ranks(trainers: list[str], folder: Path, world_size: int = 2) -> None:
    """Start one worker process per rank, every trainer in turn inside it (``folder``/TRAINER/rank<R>.json)."""
    env = {**os.environ, "nnUNet_results": str(folder / "results"), "OMP_NUM_THREADS": "1"}
    store = folder / "store"
    processes = [subprocess.Popen([sys.executable, str(WORKER), ",".join(trainers), str(rank), str(world_size),
                                   str(store), str(folder)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
                 for rank in range(world_size)]
    logs = [process.communicate(timeout=600)[0] for process in processes]
    for process, log in zip(processes, logs, strict=True):
        assert process.returncode == 0, log[-3000:]


def run_single(trainers: list[str], folder: Path, world_size: int = 2) -> None:
    env = {**os.environ, "nnUNet_results": str(folder / "results_single"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(WORKER), ",".join(trainers), "single", str(world_size), "-",
                           str(folder)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


def rank_reports(folder: Path, trainer: str, world_size: int = 2) -> list[dict]:
    """The ranks' JSON reports of one trainer, rank order."""
    return [json.loads((folder / trainer / f"rank{rank}.json").read_text()) for rank in range(world_size)]


# one trainer per code path DDP could get wrong: FR's autograd Function with the summed distillation term (FR+AD
# holds what Baseline, FR and AD run alone), the other two recalibration modules, the mean reduction, deep
# supervision and each skeleton loss; a distillation weight or the optimiser changes no reduction
DDP_TRAINERS = ["nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayCSE", "nnUNetTrainerAirwayPE",
                "nnUNetTrainerAirwayAD_mean", "nnUNetTrainerAirwayFRAD_DS", "nnUNetTrainerAirwayFRAD_SkelRecall",
                "nnUNetTrainerAirwayBaseline_clDice"]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every DDP trainer under two gloo ranks and in one process, once for the module."""
    folder = tmp_path_factory.mktemp("ddp")
    run_ranks(DDP_TRAINERS, folder)
    run_single(DDP_TRAINERS, folder)
    return folder


@pytest.mark.parametrize("trainer", DDP_TRAINERS)
def test_ddp_gradients_equal_one_process_on_the_union_of_the_batches(trainer: str, ddp_runs: Path) -> None:
    """FR's autograd Function, the frozen deep-supervision heads (no unused-parameter error), batch Dice and the
    distillation term: DDP's averaged gradients after one step are the single-process gradients."""
    single = torch.load(ddp_runs / trainer / "grads_single.pt")
    # one tolerance for the whole network: a conv bias before instance norm has a gradient of rounding noise
    atol = 1e-4 * max(float(g.abs().max()) for g in single.values())
    for rank in (0, 1):
        ddp = torch.load(ddp_runs / trainer / f"grads_rank{rank}.pt")
        # nnU-Net weights the coarsest deep-supervision output 1e-6 under DDP (0 in one process) so that DDP
        # sees a gradient for it; that head may differ by that much, nothing else may be missing
        for name in ddp.keys() ^ single.keys():
            assert name.startswith("decoder.seg_layers.") and float((ddp.get(name, single.get(name))).abs().max()) < atol
        for name in ddp.keys() & single.keys():
            torch.testing.assert_close(ddp[name], single[name], rtol=1e-3, atol=atol,
                                       msg=lambda m, n=name: f"{n}: {m}")


def test_batch_dice_is_taken_over_every_ranks_batch(ddp_runs: Path) -> None:
    """Far from the prior, where the Dice term matters: each rank's logit gradient is world_size times the
    single-process gradient on the union (which DDP's averaging turns into the union's parameter gradient). A
    Dice per rank (no all-reduce) misses by far more than the tolerance."""
    for rank in (0, 1):
        grads = torch.load(ddp_runs / f"loss_grads_rank{rank}.pt")
        torch.testing.assert_close(grads["rank"], 2 * grads["union"], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("trainer", ["nnUNetTrainerAirwayFRAD", "nnUNetTrainerAirwayFRAD_DS"])
def test_loss_components_are_averaged_over_the_ranks(trainer: str, ddp_runs: Path) -> None:
    ranks = rank_reports(ddp_runs, trainer)
    (record,) = read_loss_components(ranks[0]["output_folder"])
    assert record["epoch"] == 0
    for name in ("segmentation", "distillation", "attention_entropy"):
        every_iteration = [np.asarray(output[name]) for rank in ranks for output in rank["outputs"]]
        rank0_alone = np.mean([np.asarray(output[name]) for output in ranks[0]["outputs"]], axis=0)
        both = np.mean(every_iteration, axis=0)
        np.testing.assert_allclose(record[name], both, rtol=1e-6)
        assert not np.allclose(both, rank0_alone, rtol=1e-6, atol=0), f"{name}: the ranks' batches must differ"
