"""The trainers a user names with ``-tr``: the paper's method and the rows of its Table 2.

Each is a few class attributes over AirwayTrainerBase (see there for what they mean).
"""

from __future__ import annotations

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_airway.trainers.base import DEFAULT_DEVICE, AirwayTrainerBase


class nnUNetTrainerAirwayFRAD(AirwayTrainerBase):
    """The paper's method (Table 2 'FR + AD'): feature recalibration at every scale, Dice + focal + 0.1 AD."""

    recalibration = "fr"
    distillation_weight = 0.1


class nnUNetTrainerAirwayBaseline(AirwayTrainerBase):
    """Table 2 'Baseline': the same five-scale U-Net without recalibration or distillation (Dice + focal)."""

    recalibration = None
    distillation_weight = 0.0


class nnUNetTrainerAirwayCSE(AirwayTrainerBase):
    """Table 2 'Baseline + cSE': channel squeeze-and-excitation (AnatomyNet) at every scale."""

    recalibration = "cse"
    distillation_weight = 0.0


class nnUNetTrainerAirwayPE(AirwayTrainerBase):
    """Table 2 'Baseline + PE': project & excite (Rickmann et al. 2019) at every scale."""

    recalibration = "pe"
    distillation_weight = 0.0


class nnUNetTrainerAirwayFR(AirwayTrainerBase):
    """Table 2 'Baseline + FR': feature recalibration at every scale, no distillation."""

    recalibration = "fr"
    distillation_weight = 0.0


class nnUNetTrainerAirwayAD(AirwayTrainerBase):
    """Table 2 'Baseline + AD': attention distillation (weight 0.1), no recalibration."""

    recalibration = None
    distillation_weight = 0.1


class nnUNetTrainerAirwayAD_mean(nnUNetTrainerAirwayAD):
    """Baseline + AD with the released code's mean reduction (averaged over voxels) instead of the paper's sum."""

    distillation_reduction = "mean"


class nnUNetTrainerAirwayAD_w001(nnUNetTrainerAirwayAD):
    """Baseline + AD at a tenth of the paper's weight (0.01), sum reduction."""

    distillation_weight = 0.01


class nnUNetTrainerAirwayAD_mean_w001(nnUNetTrainerAirwayAD):
    """Baseline + AD with the mean reduction at weight 0.01."""

    distillation_weight = 0.01
    distillation_reduction = "mean"


class nnUNetTrainerAirwayFRAD_DS(nnUNetTrainerAirwayFRAD):
    """FR + AD with nnU-Net-style deep supervision on the four finer scales (not in the paper)."""

    deep_supervision = True


class nnUNetTrainerAirwayFRAD_Adam(nnUNetTrainerAirwayFRAD):
    """FR + AD with the paper's optimiser: Adam (betas 0.5, 0.999), constant learning rate 2e-4, no weight decay.

    The epoch count and iterations per epoch stay nnU-Net's (the paper trained 50 epochs of its own length).
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 2e-4
        self.weight_decay = 0.0

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, betas=(0.5, 0.999),
                                     weight_decay=self.weight_decay)
        # exponent 0: a constant rate that still answers nnU-Net's per-epoch scheduler.step(epoch)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=0.0)


# the paper's Table 2 rows and this project's two extra settings of the full model: what tests step through
CORE_VARIANTS: tuple[type[AirwayTrainerBase], ...] = (
    nnUNetTrainerAirwayBaseline, nnUNetTrainerAirwayCSE, nnUNetTrainerAirwayPE, nnUNetTrainerAirwayFR,
    nnUNetTrainerAirwayAD, nnUNetTrainerAirwayFRAD, nnUNetTrainerAirwayFRAD_DS, nnUNetTrainerAirwayFRAD_Adam,
)
