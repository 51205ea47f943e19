"""One rank of a two-process DDP run on the CPU (gloo), as nnUNetv2_train -num_gpus 2 runs a trainer: the
airway trainer built from plans alone, its network wrapped in DistributedDataParallel, a few train_step calls on
this rank's own synthetic batches, then nnU-Net's on_train_epoch_end (where the loss components are averaged
over the ranks and rank 0 writes loss_components.json).

    python ddp_worker.py TRAINER[,TRAINER...] RANK WORLD_SIZE STORE_FILE OUT_FOLDER
    python ddp_worker.py TRAINER[,TRAINER...] single WORLD_SIZE - OUT_FOLDER

Each trainer in turn, in one process group (one process start for all of them), into OUT_FOLDER/TRAINER/:
rank<RANK>.json, this rank's own train_step outputs (per iteration) and the output folder, and
grads_rank<RANK>.pt, the parameter gradients after the first step (DDP-averaged, clipped); OUT_FOLDER holds
loss_grads_rank<RANK>.pt (the loss alone, the same for every trainer). ``single``: no process group; one step
on the union of every rank's first batch, its gradients to OUT_FOLDER/TRAINER/grads_single.pt (what the DDP run
must equal).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from nnunet_airway.trainers.budget import BUDGET_TRAINERS
from nnunet_airway.trainers.standalone import CONFIGURATION, DATASET_JSON, plans_for, synthetic_batch
from nnunet_airway.trainers.variants import TRAINERS

PATCH, FEATURES, STRIDES = (16, 32, 32), (2, 4, 4, 4, 4), ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
STEPS = 2


def build(trainer_name: str, world_size: int, ddp: bool):
    trainer_class = {**TRAINERS, **BUDGET_TRAINERS}[trainer_name]
    plans = dict(plans_for(PATCH, FEATURES, STRIDES, batch_size=2 * world_size), continue_training=False)
    trainer = trainer_class(plans, CONFIGURATION, 0, DATASET_JSON, device=torch.device("cpu"))
    assert trainer.is_ddp == ddp
    trainer.device = torch.device("cpu")  # nnU-Net assumes CUDA under DDP; gloo runs on the CPU
    trainer.num_input_channels = 1
    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 2,
                                                 trainer.enable_deep_supervision)
    trainer.network = DistributedDataParallel(network) if ddp else network  # as nnUNetTrainer.initialize does
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    trainer.was_initialized = True
    trainer.current_epoch = 0
    return trainer, network


def batches(trainer, rank: int):
    generator = torch.Generator().manual_seed(1000 + rank)  # every rank its own batches
    while True:
        yield synthetic_batch(trainer, generator)


def gradients(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in network.named_parameters() if p.grad is not None}


def single(trainer_name: str, world_size: int, out: Path) -> None:
    """One step on the union of the ranks' first batches, in one process."""
    trainer, network = build(trainer_name, world_size, ddp=False)
    firsts = [next(batches(trainer, rank)) for rank in range(world_size)]
    union = {"data": torch.cat([b["data"] for b in firsts])}
    targets = [b["target"] for b in firsts]
    union["target"] = ([torch.cat(scale) for scale in zip(*targets, strict=True)] if isinstance(targets[0], list)
                       else torch.cat(targets))
    trainer.train_step(union)
    torch.save(gradients(network), out / "grads_single.pt")


def dice_focal_logit_gradients(rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """The loss alone, on logits far from the prior (where the batch Dice matters): this rank's share of a
    fixed batch through the trainers' DiceFocalLoss(ddp=True); its logit gradients, and the union's in one
    process. Under DDP's averaging, rank r's gradient must be world_size times the union's for its samples."""
    from nnunet_airway.model.losses import DiceFocalLoss

    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(2 * world_size, 2, 4, 8, 8, generator=generator)
    target = (torch.rand(2 * world_size, 1, 4, 8, 8, generator=generator) > 0.7).float()
    union = logits.clone().requires_grad_()
    DiceFocalLoss(ddp=False)(union, target).backward()
    mine = logits[2 * rank: 2 * rank + 2].clone().requires_grad_()
    DiceFocalLoss(ddp=True)(mine, target[2 * rank: 2 * rank + 2]).backward()
    return {"rank": mine.grad, "union": union.grad[2 * rank: 2 * rank + 2]}


def one_rank(trainer_name: str, rank: int, world_size: int, out: Path) -> None:
    """STEPS train_steps of one trainer on this rank's batches in the open process group, then its epoch end."""
    trainer, network = build(trainer_name, world_size, ddp=True)
    assert trainer.local_rank == rank
    own = batches(trainer, rank)
    outputs = [trainer.train_step(next(own))]
    torch.save(gradients(network), out / f"grads_rank{rank}.pt")
    outputs += [trainer.train_step(next(own)) for _ in range(STEPS - 1)]
    trainer.on_train_epoch_end(outputs)
    own = [{key: np.asarray(value).tolist() for key, value in output.items()} for output in outputs]
    (out / f"rank{rank}.json").write_text(json.dumps({"outputs": own, "output_folder": trainer.output_folder}))


def main(trainer_names: list[str], rank: int, world_size: int, store: str, out: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        torch.save(dice_focal_logit_gradients(rank, world_size), out / f"loss_grads_rank{rank}.pt")
        for name in trainer_names:
            (out / name).mkdir(exist_ok=True)
            one_rank(name, rank, world_size, out / name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    names, out_folder = sys.argv[1].split(","), Path(sys.argv[5])
    if sys.argv[2] == "single":
        for trainer_name in names:
            (out_folder / trainer_name).mkdir(exist_ok=True)
            single(trainer_name, int(sys.argv[3]), out_folder / trainer_name)
    else:
        main(names, int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], out_folder)
