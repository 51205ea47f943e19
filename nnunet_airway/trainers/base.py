"""One nnU-Net trainer for the paper's U-Net and its Table 2 ablations; the variants only set class attributes.

Overrides the fewest nnUNetTrainer methods: the network (FRADUNet from the plans), the loss (Dice + focal
+ weighted attention distillation), the training step (which asks the network for its decoder features and
hands them to the loss, and returns the loss components), the deep-supervision scales of a five-scale
network, the optimiser for the "paper-adam" setting only, and the end of an epoch (which also writes
``progress.json``, see trainers/progress.py). Data pipeline, optimiser and schedule otherwise, torch.compile,
checkpoints, validation and prediction are nnU-Net's; nnU-Net's own
set_deep_supervision_enabled works because FRADUNet keeps the flag on ``decoder.deep_supervision``.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import autocast, nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation
from nnunet_airway.model.topology_losses import SkeletonRecallLoss, SoftClDiceLoss
from nnunet_airway.trainers.compat import require_nnunetv2
from nnunet_airway.trainers.declarations import PAPER_ADAM
from nnunet_airway.trainers.loss_components import LossComponentsRecord
from nnunet_airway.trainers.network import build_airway_network, network_depth
from nnunet_airway.trainers.progress import epochs_from_log, write_progress
from nnunet_airway.trainers.skeleton_transform import with_tubed_skeleton

require_nnunetv2()  # nnunetv2 < 2.8 imports fine but cannot find these trainers: say what to install

# Share of training patches centred on an airway voxel, drawn per patch (nnU-Net's default: 0.33 with
# deterministic rounding, which at batch size 2 means one of the two patches). The paper crops its patches
# "densely near airways"; we keep a third of them random so the network also sees bowel gas and air outside
# the body, which the paper removed by lung masking and nnU-Net does not.
FOREGROUND_OVERSAMPLING = 0.67
PAPER_ADAM_LR, PAPER_ADAM_BETAS = 2e-4, (0.5, 0.999)  # the paper's Adam (also the budget trainers' betas)
DEFAULT_DEVICE = torch.device("cuda")  # nnUNetTrainer's default; nnUNetv2_train passes the -device choice


def unwrapped(network: nn.Module) -> nn.Module:
    """The FRADUNet inside DDP and/or torch.compile wrappers (where its attributes and parameters live)."""
    while isinstance(network, DistributedDataParallel | OptimizedModule):
        network = network.module if isinstance(network, DistributedDataParallel) else network._orig_mod
    return network


class AirwayTrainerBase(LossComponentsRecord, nnUNetTrainer):
    """nnU-Net trainer building FRADUNet from the plans. Not meant to be run itself: use a variant.

    Class attributes the variants set:
        recalibration: "fr", "pe", "cse" or None (where FRADUNet recalibrates the end of every scale);
        distillation_weight: weight of the attention-distillation term (0 switches it off; paper: 0.1);
        distillation_reduction: "sum" (paper) or "mean" (the released code), see attention_distillation_loss;
        deep_supervision: nnU-Net-style deep supervision (off in the paper);
        optimiser: "nnunet" (nnU-Net's SGD with its poly schedule) or "paper-adam" (Adam, betas 0.5 and 0.999,
            a constant learning rate of 2e-4, no weight decay; nnU-Net's epoch count and length stay);
        topology_loss: None, "skeleton_recall" (Kirchhoff et al. 2024: the tubed reference skeleton is made in
            the data pipeline, trainers/skeleton_transform.py) or "cldice" (Shit et al. 2021), added to the loss
            with ``topology_weight`` on the full-resolution output (model/topology_losses.py).
    The variants a user names are declared in trainers/declarations.py and made in trainers/variants.py.
    torch.compile follows nnU-Net (on for CUDA unless ``nnUNet_compile=f``, off on CPU); mixed precision on CUDA
    is nnU-Net's; gates, attention maps and losses are computed in float32 (docs/gpu.md). The loss components
    are written per epoch to ``loss_components.json`` (see trainers/loss_components.py).
    """

    recalibration: str | None = "fr"
    distillation_weight: float = 0.1
    distillation_reduction: str = "sum"
    deep_supervision: bool = False
    optimiser: str = "nnunet"
    topology_loss: str | None = None
    topology_weight: float = 0.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = self.deep_supervision
        self.oversample_foreground_percent = FOREGROUND_OVERSAMPLING
        self.probabilistic_oversampling = True
        if self.optimiser == PAPER_ADAM:
            self.initial_lr = PAPER_ADAM_LR
            self.weight_decay = 0.0

    def configure_optimizers(self):
        if self.optimiser != PAPER_ADAM:
            return super().configure_optimizers()
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, betas=PAPER_ADAM_BETAS,
                                     weight_decay=self.weight_decay)
        # exponent 0: a constant rate that still answers nnU-Net's per-epoch scheduler.step(epoch)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """nnU-Net >= 2.7 signature; also what nnUNetv2_predict calls (with deep supervision off).

        FRADUNet always builds the deep-supervision heads (so checkpoints load either way); without deep
        supervision only the finest is used, and DDP (``-num_gpus N``) stops on parameters that never get a
        gradient, so the others are frozen (``requires_grad=False``; they stay in the state dict).
        """
        network = build_airway_network(configuration_manager, num_input_channels, num_output_channels,
                                       recalibration=cls.recalibration, deep_supervision=enable_deep_supervision)
        if not enable_deep_supervision:
            for head in network.decoder.seg_layers[:-1]:
                head.requires_grad_(False)
        return network

    def _get_deep_supervision_scales(self) -> list[list[float]] | None:
        if not self.enable_deep_supervision:
            return None
        depth = network_depth(self.configuration_manager)
        strides = np.array(self.configuration_manager.pool_op_kernel_sizes[:depth], dtype=float)
        return [list(scale) for scale in 1 / np.cumprod(strides, axis=0)][:-1]

    def _build_loss(self) -> SegmentationWithDistillation:
        segmentation: nn.Module = DiceFocalLoss(ddp=self.is_ddp)  # batch Dice over every rank's batch
        if self.enable_deep_supervision:
            # nnU-Net's weighting: halve per scale, drop the coarsest (a tiny weight under DDP without compile,
            # where an unused output makes DDP complain), normalise to 1
            weights = 0.5 ** np.arange(len(self._get_deep_supervision_scales()))
            weights[-1] = 1e-6 if self.is_ddp and not self._do_i_compile() else 0.0
            segmentation = DeepSupervisionWrapper(segmentation, weights / weights.sum())
        topology = {None: None, "skeleton_recall": SkeletonRecallLoss, "cldice": SoftClDiceLoss}[self.topology_loss]
        return SegmentationWithDistillation(segmentation, self.distillation_weight,
                                            distillation_reduction=self.distillation_reduction,
                                            topology=topology() if topology else None,
                                            topology_weight=self.topology_weight)

    def get_training_transforms(self, *args, **kwargs):
        """nnU-Net's training transforms; with the Skeleton Recall loss, the tubed skeleton of every augmented
        patch is appended to its segmentation (before the deep-supervision downsampling)."""
        transforms = super().get_training_transforms(*args, **kwargs)
        return with_tubed_skeleton(transforms) if self.topology_loss == "skeleton_recall" else transforms

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's training step (autocast on CUDA, its GradScaler, gradient clipping at 12), with the decoder
        features handed from the network to the loss in the open, and the loss components returned beside
        nnU-Net's ``loss`` (LossComponentsRecord averages them over the epoch and the DDP ranks)."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)
        skeleton = None
        if self.loss.uses_skeleton:  # the data pipeline's second segmentation channel (TubedSkeletonTransform)
            skeleton = (target[0] if isinstance(target, list) else target)[:, 1:]
            target = [t[:, :1] for t in target] if isinstance(target, list) else target[:, :1]
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            if self.loss.uses_decoder_features:
                output, decoder_features = self.network(data, return_decoder_features=True)
            else:
                output, decoder_features = self.network(data), None
            loss, components = self.loss(output, target, decoder_features, return_components=True, skeleton=skeleton)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy(),
                **{name: value.cpu().numpy() for name, value in components.items()}}

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        if self.local_rank == 0:
            write_progress(self.output_folder, epochs_from_log(self.logger))
