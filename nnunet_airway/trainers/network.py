"""nnU-Net plans -> the airway network.

- FRADUNet plans (``nnunet-airway plan --preset plain``): the FR/AD U-Net exactly as its arch_kwargs say.
- nnU-Net's PlainConvUNet plans (``nnUNetPlans``): the paper's FR/AD U-Net from the patch size and the first five
  stages' features, kernels and strides; what the plans say otherwise (more stages, LeakyReLU, strided
  convolutions) is replaced by the paper's choices, and a notice says so once per process.
- ResidualEncoderUNet plans (nnU-Net's ResEnc presets, ``nnunet-airway plan --preset resenc-*``): the residual
  encoder as the plans describe it, with FR/AD (model/resenc.py).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_airway.model.resenc import ResEncFRADUNet
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


PLAIN_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESIDUAL_ENCODER_UNET = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
FRADUNET = "nnunet_airway.model.unet.FRADUNet"  # the airway planner's plain preset names the trained network
# the network classes of plans the airway trainers build (with FR/AD): the airway planner's FR/AD U-Net, nnU-Net's
# plain U-Net and the residual encoder of the ResEnc presets
SUPPORTED_NETWORK_CLASSES = (FRADUNET, PLAIN_UNET, RESIDUAL_ENCODER_UNET)
# arch_kwargs of FRADUNet plans: FRADUNet's architecture arguments (recalibration and deep supervision are the
# trainer's), every one required so that the plans say the whole network
FRADUNET_KWARGS = ("features_per_stage", "strides", "kernel_sizes", "n_conv_per_stage", "n_conv_per_stage_decoder",
                   "conv_bias", "nonlin", "downsampling", "upsampling")
_noticed: set[str] = set()
# what the residual-encoder network takes from the plans' arch_kwargs as it is, and the values it needs in the rest
RESENC_REQUIRED = {"conv_op": ("torch.nn.modules.conv.Conv3d",),
                   "norm_op": ("torch.nn.modules.instancenorm.InstanceNorm3d",),
                   "dropout_op": (None,),
                   "nonlin": ("torch.nn.LeakyReLU", "torch.nn.modules.activation.LeakyReLU", "torch.nn.ReLU",
                              "torch.nn.modules.activation.ReLU")}
RESENC_USED = ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_blocks_per_stage",
               "n_conv_per_stage_decoder", "conv_bias", "norm_op_kwargs", "dropout_op_kwargs", "nonlin_kwargs",
               "block", "bottleneck_channels", "stem_channels", *RESENC_REQUIRED)


def network_class(configuration_manager: ConfigurationManager) -> str:
    """The plans' network class name (the plain U-Net when the plans name none, as nnU-Net before 2.4)."""
    return configuration_manager.configuration.get("architecture", {}).get("network_class_name") or PLAIN_UNET


def is_residual_encoder(configuration_manager: ConfigurationManager) -> bool:
    return network_class(configuration_manager).endswith(".ResidualEncoderUNet")


def names_fradunet(configuration_manager: ConfigurationManager) -> bool:
    return network_class(configuration_manager) == FRADUNET


def network_depth(configuration_manager: ConfigurationManager) -> int:
    """Resolution stages of the network the airway trainers build: every stage of FRADUNet and residual-encoder
    plans, the paper's five on nnU-Net's plain plans."""
    if is_residual_encoder(configuration_manager) or names_fradunet(configuration_manager):
        return len(configuration_manager.network_arch_init_kwargs["strides"])
    return N_SCALES


def check_plans_for_fradunet(configuration_manager: ConfigurationManager, num_output_channels: int) -> None:
    """Raise ValueError, saying what to change, when the plans cannot give the paper's five-scale 3-D U-Net."""
    name = network_class(configuration_manager)
    if name not in SUPPORTED_NETWORK_CLASSES:
        raise ValueError(
            f"these plans describe a {name.split('.')[-1]} ({name}), but the airway trainers build FR/AD on the "
            f"airway planner's plans (nnunet-airway plan -d ID --preset plain|resenc-m|resenc-l|resenc-xl, then -p "
            f"nnUNetAirwayPlans or nnUNetAirwayResEnc<M|L|XL>Plans), PlainConvUNet plans (-p nnUNetPlans, from "
            f"nnUNetv2_plan_and_preprocess without -pl) and "
            f"ResidualEncoderUNet plans (nnU-Net's ResEnc presets: -pl nnUNetPlannerResEncM|L|XL, then -p "
            f"nnUNetResEncUNetMPlans|LPlans|XLPlans) only, and would otherwise train a different network than the "
            "plans say; plan with one of those or use nnU-Net's own trainer for these plans"
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
    if is_residual_encoder(configuration_manager):
        _check_resenc_kwargs(arch)
        return
    if names_fradunet(configuration_manager):
        _check_fradunet_kwargs(arch)
        return
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
    if is_residual_encoder(configuration_manager):
        raise ValueError("these are residual-encoder plans: build their network with build_airway_network (the "
                         "residual encoder with FR/AD), not the plain FR/AD U-Net")
    arch = configuration_manager.network_arch_init_kwargs
    if names_fradunet(configuration_manager):
        return FRADUNet(num_input_channels, num_output_channels, patch_size=_as_ints(configuration_manager.patch_size),
                        recalibration=recalibration, deep_supervision=deep_supervision,
                        foreground_prior=foreground_prior, **arch)
    _notice_replaced_choices(arch)
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


def _check_fradunet_kwargs(arch: dict) -> None:
    """ValueError naming the keys of FRADUNet plans that FRADUNet does not take, or that are missing."""
    unknown = sorted(set(arch) - set(FRADUNET_KWARGS))
    missing = [key for key in FRADUNET_KWARGS if key not in arch]
    if unknown or missing:
        said = [f"{', '.join(unknown)}, which FRADUNet does not take and the trainer would ignore"] if unknown else []
        said += [f"no {', '.join(missing)}"] if missing else []
        raise ValueError(f"the FRADUNet plans' arch_kwargs hold {'; and '.join(said)}; the airway planner writes "
                         f"exactly {', '.join(FRADUNET_KWARGS)}: re-plan with nnunet-airway plan --overwrite or fix "
                         "the plans file")
    for key, allowed in (("nonlin", ("relu", "leaky_relu")), ("downsampling", ("max_pool", "conv")),
                         ("upsampling", ("transpconv", "nearest"))):
        if arch[key] not in allowed:
            raise ValueError(f"the FRADUNet plans' {key} is {arch[key]!r}; FRADUNet builds {' or '.join(allowed)}")


def _notice_replaced_choices(arch: dict) -> None:
    """Say once per process what of nnU-Net's PlainConvUNet plans the paper's network does not follow."""
    replaced = []
    if len(arch.get("strides", [])) > N_SCALES:
        replaced.append(f"{len(arch['strides'])} stages cut to the paper's {N_SCALES}")
    if "LeakyReLU" in str(arch.get("nonlin")):
        replaced.append("LeakyReLU replaced by ReLU")
    replaced.append("strided convolutions replaced by max-pooling")
    if any(int(n) != 2 for n in [*arch.get("n_conv_per_stage", [2]), *arch.get("n_conv_per_stage_decoder", [2])]):
        replaced.append("convolutions per stage set to the paper's 2")
    notice = "; ".join(replaced)
    if notice not in _noticed:
        _noticed.add(notice)
        print(f"nnunet-airway: these PlainConvUNet plans describe nnU-Net's network; the airway trainers build the "
              f"paper's FR/AD U-Net from them ({notice}), keeping their patch and batch. For plans that describe "
              "the trained network and are sized for its memory, plan with: nnunet-airway plan -d ID --preset plain",
              file=sys.stderr)


def _check_resenc_kwargs(arch: dict) -> None:
    """ValueError naming the keys of residual-encoder plans the network would have to ignore or cannot honour."""
    unknown = sorted(set(arch) - set(RESENC_USED))
    if unknown:
        raise ValueError(f"the residual-encoder plans' arch_kwargs hold {', '.join(unknown)}, which the airway "
                         f"network does not build and would ignore; remove them from a copy of the plans used via "
                         f"-p, or use nnU-Net's own trainer for these plans")
    for key, allowed in RESENC_REQUIRED.items():
        if arch.get(key) not in allowed:
            raise ValueError(f"the residual-encoder plans' {key} is {arch.get(key)!r}; the airway network builds "
                             f"{' or '.join(str(a) for a in allowed)} only (as nnU-Net's ResEnc presets plan it)")
    norm = arch.get("norm_op_kwargs") or {}
    if not norm.get("affine", False) or float(norm.get("eps", 1e-5)) != 1e-5:
        raise ValueError(f"the residual-encoder plans' norm_op_kwargs are {norm}; the airway network uses "
                         "InstanceNorm3d(eps=1e-5, affine=True) as the presets plan it")
    slope = (arch.get("nonlin_kwargs") or {}).get("negative_slope", 1e-2)
    if "LeakyReLU" in str(arch["nonlin"]) and float(slope) != 1e-2:
        raise ValueError(f"the residual-encoder plans' LeakyReLU has negative_slope {slope}; the airway network "
                         "uses 1e-2 (the presets' default)")


def build_resenc_fradunet(
    configuration_manager: ConfigurationManager,
    num_input_channels: int,
    num_output_channels: int,
    recalibration: str | None,
    deep_supervision: bool,
    foreground_prior: float | None = FOREGROUND_PRIOR,
) -> ResEncFRADUNet:
    """The residual-encoder U-Net the plans describe (every stage, blocks, stem, nonlinearity), with FR/AD."""
    check_plans_for_fradunet(configuration_manager, num_output_channels)
    arch = configuration_manager.network_arch_init_kwargs
    nonlin = "relu" if str(arch["nonlin"]).endswith("ReLU") and "Leaky" not in str(arch["nonlin"]) else "leaky_relu"
    return ResEncFRADUNet(
        num_input_channels,
        num_output_channels,
        patch_size=_as_ints(configuration_manager.patch_size),
        features_per_stage=[int(f) for f in arch["features_per_stage"]],
        strides=[_as_ints(s) for s in arch["strides"]],
        kernel_sizes=[_as_ints(k) for k in arch["kernel_sizes"]],
        n_blocks_per_stage=[int(n) for n in arch["n_blocks_per_stage"]],
        n_conv_per_stage_decoder=[int(n) for n in arch["n_conv_per_stage_decoder"]],
        block=str(arch.get("block", "BasicBlockD")).split(".")[-1],
        bottleneck_channels=arch.get("bottleneck_channels"),
        stem_channels=arch.get("stem_channels"),
        conv_bias=bool(arch["conv_bias"]),
        nonlin=nonlin,
        recalibration=recalibration,
        deep_supervision=deep_supervision,
        foreground_prior=foreground_prior,
    )


def build_airway_network(
    configuration_manager: ConfigurationManager,
    num_input_channels: int,
    num_output_channels: int,
    recalibration: str | None,
    deep_supervision: bool,
    foreground_prior: float | None = FOREGROUND_PRIOR,
) -> FRADUNet | ResEncFRADUNet:
    """The airway network of these plans: the FR/AD U-Net from plain plans, the residual encoder with FR/AD from
    residual-encoder plans (ValueError saying what to change for any other)."""
    build = build_resenc_fradunet if is_residual_encoder(configuration_manager) else build_fradunet
    return build(configuration_manager, num_input_channels, num_output_channels, recalibration, deep_supervision,
                 foreground_prior)


def _as_ints(values: Sequence) -> tuple[int, ...]:
    return tuple(int(v) for v in values)
