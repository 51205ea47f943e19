"""nnU-Net plans -> FRADUNet: the patch size and the first five stages' features, kernels and strides."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_airway.model.unet import FRADUNet

N_SCALES = 5  # the paper's U-Net: five resolution scales, i.e. four downsamplings
# Airway probability the output layer starts at (the focal loss paper's prior initialisation): from the
# default p = 0.5 the Dice + focal loss lowers the background probability slowly, which thickens the
# predicted tubes early in training (see FRADUNet's foreground_prior and docs/model.md).
FOREGROUND_PRIOR = 0.01


def _first_stages(arch_kwargs: dict, key: str) -> list:
    if key not in arch_kwargs:
        raise ValueError(
            f"the plans' 'architecture' -> 'arch_kwargs' has no {key!r}; the airway trainers read "
            "'features_per_stage', 'kernel_sizes' and 'strides' from plans made by nnUNetv2_plan_and_preprocess"
        )
    return list(arch_kwargs[key])[:N_SCALES]


# the network classes of nnU-Net plans whose layout FRADUNet reproduces (features, kernels, strides)
SUPPORTED_NETWORK_CLASSES = ("dynamic_network_architectures.architectures.unet.PlainConvUNet",)


def check_plans_for_fradunet(configuration_manager: ConfigurationManager, num_output_channels: int) -> None:
    """Raise ValueError, saying what to change, when the plans cannot give the paper's five-scale 3-D U-Net."""
    network_class = configuration_manager.configuration.get("architecture", {}).get("network_class_name")
    if network_class is not None and network_class not in SUPPORTED_NETWORK_CLASSES:
        raise ValueError(
            f"these plans describe a {network_class.split('.')[-1]} ({network_class}), but the airway trainers "
            f"build their FR/AD U-Net from {', '.join(c.split('.')[-1] for c in SUPPORTED_NETWORK_CLASSES)} plans "
            "only and would otherwise train a different network than the plans say (residual-encoder plans, "
            "nnUNetResEncUNet*Plans, are not supported yet); train with the default plans (-p nnUNetPlans, from "
            "nnUNetv2_plan_and_preprocess without -pl) or use nnU-Net's own trainer for these plans"
        )
    patch = list(configuration_manager.patch_size)
    arch = configuration_manager.network_arch_init_kwargs
    strides = list(arch.get("strides", []))
    if len(patch) != 3:
        raise ValueError(
            f"FRADUNet is a 3-D network but this configuration's patch_size is {patch}; "
            "train a 3-D configuration (3d_fullres or 3d_lowres), not 2d"
        )
    if num_output_channels != 2:
        raise ValueError(
            f"the airway trainers segment background and airway (2 outputs) but the dataset gives "
            f"{num_output_channels}; dataset.json 'labels' must be {{'background': 0, 'airway': 1}}"
        )
    if len(strides) < N_SCALES:
        raise ValueError(
            f"the plans' configuration has {len(strides)} resolution stages (strides {strides}) but FRADUNet needs "
            f"{N_SCALES} (four downsamplings, as in the paper); nnU-Net plans fewer stages when the patch is small: "
            "make 'patch_size' larger in the plans (nnUNetPlans.json -> 'configurations') and re-plan, or add stages "
            "to 'strides', 'kernel_sizes' and 'features_per_stage' (with 'n_stages') in a copy of the plans used via -p"
        )
    total = [math.prod(int(s[axis]) for s in strides[:N_SCALES]) for axis in range(3)]
    if any(p % t for p, t in zip(patch, total, strict=True)):
        suggestion = [max(t, round(p / t) * t) for p, t in zip(patch, total, strict=True)]
        raise ValueError(
            f"patch_size {patch} is not divisible by {total}, the total stride of the first {N_SCALES} stages "
            f"(strides {strides[:N_SCALES]}); set 'patch_size' in the plans to a multiple of it, e.g. {suggestion}"
        )


def build_fradunet(
    configuration_manager: ConfigurationManager,
    num_input_channels: int,
    num_output_channels: int,
    recalibration: str | None,
    deep_supervision: bool,
    foreground_prior: float | None = FOREGROUND_PRIOR,
) -> FRADUNet:
    """The FRADUNet the plans describe; deeper plans are cut to their first five stages (the paper's depth)."""
    check_plans_for_fradunet(configuration_manager, num_output_channels)
    arch = configuration_manager.network_arch_init_kwargs
    return FRADUNet(
        num_input_channels,
        num_output_channels,
        patch_size=_as_ints(configuration_manager.patch_size),
        features_per_stage=[int(f) for f in _first_stages(arch, "features_per_stage")],
        strides=[_as_ints(s) for s in _first_stages(arch, "strides")],
        kernel_sizes=[_as_ints(k) for k in _first_stages(arch, "kernel_sizes")],
        recalibration=recalibration,
        deep_supervision=deep_supervision,
        # the paper's U-Net, whatever the plans' own network: 2 x (conv + IN + ReLU) per scale, max-pool down
        n_conv_per_stage=2,
        n_conv_per_stage_decoder=2,
        nonlin="relu",
        downsampling="max_pool",
        upsampling="transpconv",
        foreground_prior=foreground_prior,
    )


def _as_ints(values: Sequence) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
