"""One rank of a two-process DDP run on the CPU (gloo), as nnUNetv2_train -num_gpus 2 runs a trainer: the
airway trainer built from plans alone, its network wrapped in DistributedDataParallel, a few train_step calls on
this rank's own synthetic batches, then nnU-Net's on_train_epoch_end (where the loss components are averaged
over the ranks and rank 0 writes loss_components.json).

    python ddp_worker.py TRAINER RANK WORLD_SIZE STORE_FILE OUT_FOLDER

Writes OUT_FOLDER/rank<RANK>.json: this rank's own train_step outputs (per iteration) and the output folder.
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


def main(trainer_name: str, rank: int, world_size: int, store: str, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        trainer_class = {**TRAINERS, **BUDGET_TRAINERS}[trainer_name]
        plans = dict(plans_for(PATCH, FEATURES, STRIDES, batch_size=2 * world_size), continue_training=False)
        trainer = trainer_class(plans, CONFIGURATION, 0, DATASET_JSON, device=torch.device("cpu"))
        assert trainer.is_ddp and trainer.local_rank == rank
        trainer.device = torch.device("cpu")  # nnU-Net assumes CUDA under DDP; gloo runs on the CPU
        trainer.num_input_channels = 1
        torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1, 2,
                                                     trainer.enable_deep_supervision)
        trainer.network = DistributedDataParallel(network)  # as nnUNetTrainer.initialize wraps it
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        trainer.loss = trainer._build_loss()
        trainer.was_initialized = True
        trainer.current_epoch = 0
        generator = torch.Generator().manual_seed(1000 + rank)  # every rank its own batches
        outputs = [trainer.train_step(synthetic_batch(trainer, generator)) for _ in range(STEPS)]
        trainer.on_train_epoch_end(outputs)
        own = [{key: np.asarray(value).tolist() for key, value in output.items()} for output in outputs]
        (out / f"rank{rank}.json").write_text(json.dumps({"outputs": own, "output_folder": trainer.output_folder}))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
