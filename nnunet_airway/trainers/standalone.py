"""A trainer's network, loss and optimiser from plans alone (no data set read): what nnU-Net's ``train_step`` runs.

For the compile and mixed-precision tests and the GPU suite, which time or check one training step without
nnU-Net's data pipeline: :func:`plans_for` writes a 3d_fullres configuration as nnUNetv2_plan_and_preprocess
would (PlainConvUNet arch_kwargs), :func:`build_trainer` makes a trainer of any class from it with nnU-Net's own
``build_network_architecture``, ``configure_optimizers`` and ``_build_loss``, and :func:`synthetic_batch` gives
a batch shaped as nnU-Net's data loader gives it (a list of targets with deep supervision).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_airway.model.topology_losses import tubed_skeleton

CONFIGURATION = "3d_fullres"
DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "airway": 1}, "numTraining": 1,
                "file_ending": ".nii.gz"}


def plans_for(patch_size: Sequence[int], features_per_stage: Sequence[int], strides: Sequence[Sequence[int]],
              batch_size: int = 2, dataset_name: str = "Dataset999_AirwayStandalone") -> dict:
    """nnU-Net plans with one 3d_fullres configuration: PlainConvUNet (3x3x3 kernels, 2 convs per stage,
    instance norm, leaky ReLU) with the given stages, as nnU-Net's planner writes them."""
    n_stages = len(features_per_stage)
    if len(strides) != n_stages:
        raise ValueError(f"one stride per stage: {n_stages} features but {len(strides)} strides")
    arch_kwargs = {
        "n_stages": n_stages,
        "features_per_stage": [int(f) for f in features_per_stage],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[3, 3, 3]] * n_stages,
        "strides": [[int(s) for s in stride] for stride in strides],
        "n_conv_per_stage": [2] * n_stages,
        "n_conv_per_stage_decoder": [2] * (n_stages - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    configuration = {
        "data_identifier": f"nnUNetPlans_{CONFIGURATION}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": int(batch_size),
        "patch_size": [int(p) for p in patch_size],
        "median_image_size_in_voxels": [float(p) for p in patch_size],
        "spacing": [1.0, 1.0, 1.0],
        "normalization_schemes": ["CTNormalization"],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": arch_kwargs,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
    }
    return {
        "dataset_name": dataset_name,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [int(p) for p in patch_size],
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 0.0, "mean": -800.0, "median": -850.0, "min": -1024.0, "percentile_00_5": -1024.0,
            "percentile_99_5": -400.0, "std": 150.0}},
        "configurations": {CONFIGURATION: configuration},
    }


def build_trainer(trainer_class: type[nnUNetTrainer], plans: dict, device: torch.device,
                  compile_backend: str | None = None) -> nnUNetTrainer:
    """A trainer with network, optimiser and loss set as ``initialize`` sets them, without reading data.

    nnU-Net writes its log under ``nnUNet_results`` (which must be set). ``compile_backend`` (e.g. "inductor",
    nnU-Net's) wraps the network in ``torch.compile`` as ``initialize`` does when ``_do_i_compile()``.
    """
    trainer = trainer_class(dict(plans, continue_training=False), CONFIGURATION, 0, DATASET_JSON, device=device)
    trainer.num_input_channels = 1
    network = trainer.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, 1, trainer.label_manager.num_segmentation_heads,
        trainer.enable_deep_supervision).to(trainer.device)
    trainer.network = network if compile_backend is None else torch.compile(network, backend=compile_backend)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    trainer.loss = trainer._build_loss()
    trainer.was_initialized = True
    return trainer


def synthetic_batch(trainer: nnUNetTrainer, generator: torch.Generator, data_scale: float = 1.0) -> dict:
    """{'data': (B, 1, *patch) float32, 'target': (B, 1, *patch) int16 or a list per deep-supervision scale}.

    The target marks voxels of a smoothed random image above its 80th percentile (blobs, about 20 % airway);
    for a Skeleton Recall trainer its tubed skeleton follows as a second channel, as the data pipeline adds it.
    """
    batch_size = trainer.configuration_manager.batch_size
    patch = [int(p) for p in trainer.configuration_manager.patch_size]
    data = torch.randn(batch_size, 1, *patch, generator=generator)
    smooth = F.avg_pool3d(data, 3, 1, 1)
    target = (smooth > torch.quantile(smooth.flatten()[::97], 0.8)).to(torch.int16)
    if getattr(trainer, "topology_loss", None) == "skeleton_recall":  # what TubedSkeletonTransform appends
        tubes = [torch.from_numpy(tubed_skeleton(sample[0].numpy())) for sample in target]
        target = torch.cat((target, torch.stack(tubes)[:, None].to(target.dtype)), dim=1)
    data = data * data_scale
    scales = trainer._get_deep_supervision_scales()
    if scales is None:
        return {"data": data, "target": target}
    targets = []
    for scale in scales:
        size = [max(1, int(round(p * s))) for p, s in zip(patch, scale, strict=True)]
        targets.append(F.interpolate(target.float(), size=size, mode="nearest").to(torch.int16))
    return {"data": data, "target": targets}


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
