"""The airway planner: nnU-Net's own experiment planners (the default one and ResEnc M/L/XL) with the memory
estimate of the network the airway trainers train, and plans that describe that network.

nnU-Net sizes patch and batch from ``compute_conv_feature_map_size`` of its own network (feature-map elements of
one sample, in units its reference values convert to GPU memory). The airway network keeps more: FR's gated
outputs, max-pooling indices, the attention maps of AD. Here nnU-Net's count of its network is scaled by the ratio
of what autograd keeps for backward (every distinct activation storage, parameters left out) in one training
forward of the airway network (FR + AD, the paper's method) to the same in nnU-Net's network with the same
arch_kwargs, both measured on CPU at a small patch of the same topology (activations scale with the patch
voxels, so the ratio carries over to the planned patch). nnU-Net's search then shrinks patch and batch as for its
own network.

The fingerprint and the 3d_fullres (and 2d) data identifier are nnU-Net's, as its ResEnc planners do, so no second
preprocessing is needed for 3d_fullres. The plans written: ``nnUNetAirwayPlans`` (plain preset: the paper's
five-scale FR/AD U-Net, class ``nnunet_airway.model.unet.FRADUNet``, ReLU, max-pooling, transposed convolutions)
or ``nnUNetAirwayResEnc{M,L,XL}Plans`` (nnU-Net's residual encoder as its preset plans it; the trainers add FR/AD);
the 2d configuration is left out (the airway networks are 3-D).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    nnUNetPlannerResEncL,
    nnUNetPlannerResEncM,
    nnUNetPlannerResEncXL,
)
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.json_export import recursive_fix_for_json_export
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import nn

from nnunet_airway.errors import DataError
from nnunet_airway.model.distillation import attention_distillation_loss
from nnunet_airway.trainers.network import FRADUNET, N_SCALES, PLAIN_UNET, build_airway_network
from nnunet_airway.writing import write_json


@dataclass(frozen=True)
class Preset:
    planner: type[ExperimentPlanner]  # nnU-Net's planner whose search and reference values are used
    plans_name: str
    gpu_memory_gb: float  # nnU-Net's target for that planner


PRESETS: dict[str, Preset] = {
    "plain": Preset(ExperimentPlanner, "nnUNetAirwayPlans", 8.0),
    "resenc-m": Preset(nnUNetPlannerResEncM, "nnUNetAirwayResEncMPlans", 8.0),
    "resenc-l": Preset(nnUNetPlannerResEncL, "nnUNetAirwayResEncLPlans", 24.0),
    "resenc-xl": Preset(nnUNetPlannerResEncXL, "nnUNetAirwayResEncXLPlans", 40.0),
}
SIZED_FOR = "FR + AD (the paper's method), deep supervision off"
_ratios: dict[str, float] = {}  # topology -> activation ratio, shared by every planner of the process


def airway_architecture(architecture: dict) -> dict:
    """The plans' ``architecture`` entry for the network the airway trainers build from nnU-Net's: the paper's
    FR/AD U-Net (first five stages, two convolutions per stage, ReLU, max-pooling, transposed convolutions) for
    PlainConvUNet, the residual encoder unchanged (the trainers add FR/AD to exactly what it says)."""
    if architecture["network_class_name"] != PLAIN_UNET:
        return deepcopy(architecture)
    kwargs = architecture["arch_kwargs"]
    n = min(N_SCALES, len(kwargs["strides"]))
    return {
        "network_class_name": FRADUNET,
        "arch_kwargs": {
            "features_per_stage": [int(f) for f in kwargs["features_per_stage"][:n]],
            "strides": [[int(s) for s in stride] for stride in kwargs["strides"][:n]],
            "kernel_sizes": [[int(k) for k in kernel] for kernel in kwargs["kernel_sizes"][:n]],
            "n_conv_per_stage": 2,
            "n_conv_per_stage_decoder": 2,
            "conv_bias": True,
            "nonlin": "relu",
            "downsampling": "max_pool",
            "upsampling": "transpconv",
        },
        "_kw_requires_import": [],
    }


def saved_activation_elements(network: nn.Module, input_shape: tuple[int, ...], distillation: bool) -> int:
    """float32-sized elements autograd keeps for backward in one training forward of ``input_shape`` (N, C, D, H,
    W): every distinct tensor storage once, the parameters left out. With ``distillation`` the forward also
    returns the decoder features and computes the attention-distillation loss from them."""
    parameters = {p.untyped_storage().data_ptr() for p in network.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(0))
    network.train()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        if distillation:
            _, features = network(x, return_decoder_features=True)
            attention_distillation_loss(features)
        else:
            network(x)
    return sum(storages.values()) // 4


def nnunet_feature_map_units(patch_size, input_channels: int, output_channels: int, class_name: str,
                             arch_kwargs: dict, requires_import) -> int:
    """nnU-Net's ``static_estimate_VRAM_usage`` (``compute_conv_feature_map_size`` of its network), with the
    network built on the meta device: the same count without allocating and initialising its weights."""
    with torch.device("meta"):
        network = get_network_from_plans(class_name, deepcopy(arch_kwargs), list(requires_import), input_channels,
                                         output_channels, allow_init=False)
    return network.compute_conv_feature_map_size(patch_size)


def measurement_patch(strides: list) -> tuple[int, int, int]:
    """The smallest patch of this topology that instance norm takes in training: the coarsest stage 2 x 1 x 1."""
    total = [math.prod(int(s[axis]) for s in strides) for axis in range(3)]
    return (2 * total[0], total[1], total[2])


def _zeroed_on_cpu(network: nn.Module) -> nn.Module:
    network = network.to_empty(device="cpu")
    with torch.no_grad():
        for tensor in [*network.parameters(), *network.buffers()]:
            tensor.zero_()
    return network


def activation_ratio(class_name: str, arch_kwargs: dict, requires_import: list | tuple, input_channels: int,
                     output_channels: int) -> float:
    """Activations kept for backward by the airway network (FR + AD) over nnU-Net's network, same arch_kwargs."""
    key = json.dumps([class_name, arch_kwargs, input_channels, output_channels], sort_keys=True, default=str)
    if key not in _ratios:
        patch = measurement_patch(list(arch_kwargs["strides"]))
        shape = (1, input_channels, *patch)
        ours_architecture = airway_architecture({"network_class_name": class_name, "arch_kwargs": arch_kwargs,
                                                 "_kw_requires_import": list(requires_import)})
        manager = ConfigurationManager({"patch_size": list(patch), "architecture": ours_architecture})
        with torch.device("meta"):  # no initialisation: the weights' values do not change what autograd keeps
            theirs = get_network_from_plans(class_name, deepcopy(arch_kwargs), list(requires_import), input_channels,
                                            output_channels, allow_init=False, deep_supervision=False)
            ours = build_airway_network(manager, input_channels, output_channels, recalibration="fr",
                                        deep_supervision=False)
        theirs, ours = _zeroed_on_cpu(theirs), _zeroed_on_cpu(ours)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
            _ratios[key] = (saved_activation_elements(ours, shape, distillation=True)
                            / saved_activation_elements(theirs, shape, distillation=False))
        finally:
            torch.set_num_threads(threads)
    return _ratios[key]


class AirwayPlannerMixin:
    """Put before one of nnU-Net's planners: the airway network's memory estimate, its architecture in the plans,
    an optional fixed patch and feature widths, and plans written atomically without the 2d configuration."""

    fixed_patch_size: tuple[int, int, int] | None = None
    fixed_batch_size: int | None = None
    preset_name: str = ""

    def configure(self, preset_name: str, patch_size: tuple[int, int, int] | None, base_features: int | None,
                  max_features: int | None, batch_size: int | None = None) -> None:
        self.preset_name = preset_name
        self.fixed_patch_size = patch_size
        self.fixed_batch_size = batch_size
        if patch_size is not None:
            self.lowres_creation_threshold = 0.0  # a given patch is for this one grid: no 3d_lowres
        if base_features is not None:
            self.UNet_base_num_features = base_features
        if max_features is not None:
            self.UNet_max_features_3d = max_features
        self.estimates: dict[str, dict[str, Any]] = {}
        self.nnunet_architectures: dict[str, dict] = {}  # data identifier -> nnU-Net's network for the same plan

    def generate_data_identifier(self, configuration_name: str) -> str:
        """nnU-Net's own data for 2d and 3d_fullres (their preprocessing does not depend on the network)."""
        if configuration_name in ("2d", "3d_fullres"):
            return f"nnUNetPlans_{configuration_name}"
        return f"{self.plans_identifier}_{configuration_name}"

    def static_estimate_VRAM_usage(self, patch_size, input_channels, output_channels, arch_class_name,  # noqa: N802
                                   arch_kwargs, arch_kwargs_req_import):
        """nnU-Net's feature-map count of its network times the airway network's activation ratio (3-D)."""
        units = nnunet_feature_map_units(patch_size, input_channels, output_channels, arch_class_name, arch_kwargs,
                                         arch_kwargs_req_import)
        if len(patch_size) != 3:
            return units
        return units * activation_ratio(arch_class_name, arch_kwargs, arch_kwargs_req_import, input_channels,
                                        output_channels)

    def _channels(self) -> tuple[int, int]:
        names = self.dataset_json.get("channel_names", self.dataset_json.get("modality", {}))
        return len(names), len(self.dataset_json["labels"])

    def _features(self, n_stages: int) -> list[int]:
        return [min(self.UNet_max_features_3d, self.UNet_base_num_features * 2 ** i) for i in range(n_stages)]

    def _reference(self) -> tuple[float, int]:
        """nnU-Net's 3-D reference value at this memory target, and the batch size it corresponds to."""
        reference = self.UNet_reference_val_3d * self.UNet_vram_target_GB / self.UNet_reference_val_corresp_GB
        return reference, self.UNet_reference_val_corresp_bs_3d

    def _with_fixed_patch(self, plan: dict, spacing, approximate_n_voxels_dataset: float) -> dict:
        patch = [int(p) for p in self.fixed_patch_size]
        _, strides, kernels, fitted, divisible = get_pool_and_conv_props(
            list(spacing), patch, self.UNet_featuremap_min_edge_length, 999999)
        if [int(p) for p in fitted] != patch:
            raise DataError(f"--patch-size {' '.join(map(str, patch))}: at this spacing ({', '.join(f'{s:g}' for s in spacing)} "
                            f"mm) nnU-Net's topology needs a multiple of {list(map(int, divisible))} per axis; give e.g. "
                            f"--patch-size {' '.join(str(int(p)) for p in fitted)}")
        plan = deepcopy(plan)
        kwargs = plan["architecture"]["arch_kwargs"]
        n = len(strides)
        blocks = "n_blocks_per_stage" if "n_blocks_per_stage" in kwargs else "n_conv_per_stage"
        kwargs.update({"n_stages": n, "kernel_sizes": kernels, "strides": strides, "features_per_stage": self._features(n),
                       blocks: list(self.UNet_blocks_per_stage_encoder[:n]),
                       "n_conv_per_stage_decoder": list(self.UNet_blocks_per_stage_decoder[:n - 1])})
        input_channels, output_channels = self._channels()
        estimate = self.static_estimate_VRAM_usage(patch, input_channels, output_channels,
                                                   plan["architecture"]["network_class_name"], kwargs,
                                                   plan["architecture"]["_kw_requires_import"])
        reference, reference_batch = self._reference()
        batch = round(reference / estimate * reference_batch)
        five_percent = round(approximate_n_voxels_dataset * self.max_dataset_covered / np.prod(patch, dtype=np.float64))
        plan["batch_size"] = max(min(batch, five_percent), self.UNet_min_batch_size)
        plan["patch_size"] = patch
        return plan

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache):
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,  # type: ignore[misc]
                                                   approximate_n_voxels_dataset, _cache)
        if len(spacing) != 3:
            return plan
        if self.fixed_patch_size is not None:
            plan = self._with_fixed_patch(plan, spacing, approximate_n_voxels_dataset)
        if self.fixed_batch_size is not None:
            plan["batch_size"] = self.fixed_batch_size
        architecture = plan["architecture"]
        input_channels, output_channels = self._channels()
        units = self.static_estimate_VRAM_usage(plan["patch_size"], input_channels, output_channels,
                                                architecture["network_class_name"], architecture["arch_kwargs"],
                                                architecture["_kw_requires_import"])  # cheap: nothing is initialised
        reference, reference_batch = self._reference()
        self.estimates[data_identifier] = {
            "memory_estimate_gib": round(float(self.UNet_vram_target_GB * units * plan["batch_size"]
                                               / (reference_batch * reference)), 2),
            "feature_map_units": int(units),
            "activation_ratio_to_nnunet": round(activation_ratio(
                architecture["network_class_name"], architecture["arch_kwargs"], architecture["_kw_requires_import"],
                input_channels, output_channels), 4),
        }
        self.nnunet_architectures[data_identifier] = deepcopy(architecture)
        plan["architecture"] = airway_architecture(architecture)
        return plan

    def save_plans(self, plans: dict) -> None:
        """Written by :func:`plan_dataset` (atomically, refusing an existing file); nothing written here."""
        self.plans = plans


class AirwayPlanner(AirwayPlannerMixin, ExperimentPlanner):
    pass


class AirwayResEncMPlanner(AirwayPlannerMixin, nnUNetPlannerResEncM):
    pass


class AirwayResEncLPlanner(AirwayPlannerMixin, nnUNetPlannerResEncL):
    pass


class AirwayResEncXLPlanner(AirwayPlannerMixin, nnUNetPlannerResEncXL):
    pass


PLANNER_CLASSES = {"plain": AirwayPlanner, "resenc-m": AirwayResEncMPlanner, "resenc-l": AirwayResEncLPlanner,
                   "resenc-xl": AirwayResEncXLPlanner}


@dataclass(frozen=True)
class PlanResult:
    path: Path
    plans: dict
    missing_data: dict[str, str]  # configuration -> its preprocessed folder that does not exist yet
    nnunet_path: Path | None = None  # nnU-Net's own network on the same plan, when asked for


def nnunet_twin(plans: dict, architectures: dict[str, dict], plans_name: str) -> dict:
    """The same plans (patch, batch, spacing, data) with nnU-Net's own network in every configuration: what
    nnU-Net's trainers train in a comparison at the same budget."""
    twin = deepcopy(plans)
    twin["plans_name"] = plans_name
    for configuration in twin["configurations"].values():
        if configuration.get("data_identifier") in architectures:
            configuration["architecture"] = deepcopy(architectures[configuration["data_identifier"]])
    twin["airway_planner"]["nnunet_twin_of"] = plans["plans_name"]
    return twin


def plan_dataset(dataset: str | int, preset: str, preprocessed_root: str | os.PathLike,
                 gpu_memory_gb: float | None = None, patch_size: tuple[int, int, int] | None = None,
                 base_features: int | None = None, max_features: int | None = None, plans_name: str | None = None,
                 overwrite: bool = False, nnunet_plans_name: str | None = None,
                 batch_size: int | None = None) -> PlanResult:
    """Plan ``dataset`` (its fingerprint must exist) with ``preset`` and write the plans file (and, with
    ``nnunet_plans_name``, its :func:`nnunet_twin`); DataError, saying what to do, on a missing fingerprint, an
    existing plans file without ``overwrite`` or a patch nnU-Net's topology cannot take."""
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    choice = PRESETS[preset]
    gpu_memory = choice.gpu_memory_gb if gpu_memory_gb is None else float(gpu_memory_gb)
    if gpu_memory <= 0:
        raise DataError(f"--gpu-memory-gb must be positive, got {gpu_memory_gb}")
    for name, value in (("--base-features", base_features), ("--max-features", max_features)):
        if value is not None and value < 1:
            raise DataError(f"{name} must be a positive number of channels, got {value}")
    name = plans_name or choice.plans_name
    try:
        with warnings.catch_warnings():
            # nnU-Net's ResEnc planners warn on a memory target other than their own, which is what was asked for
            warnings.simplefilter("ignore", UserWarning)
            planner = PLANNER_CLASSES[preset](dataset, gpu_memory_target_in_gb=gpu_memory, plans_name=name)
    except RuntimeError as error:
        if "Fingerprint missing" in str(error):
            raise DataError(f"dataset {dataset}: no dataset_fingerprint.json in nnUNet_preprocessed; run "
                            f"nnUNetv2_extract_fingerprint -d {dataset} (or nnUNetv2_plan_and_preprocess) first") from None
        raise DataError(f"dataset {dataset}: {error}") from None
    target = Path(preprocessed_root) / planner.dataset_name / f"{name}.json"
    twin_target = Path(preprocessed_root) / planner.dataset_name / f"{nnunet_plans_name}.json"
    if nnunet_plans_name == name:
        raise DataError(f"--nnunet-plans-name {nnunet_plans_name}: the airway plans' own name; choose another")
    for path, flag in ((target, "--plans-name"), (twin_target if nnunet_plans_name else None, "--nnunet-plans-name")):
        if path is not None and path.exists() and not overwrite:
            raise DataError(f"{path}: exists; pass --overwrite to replace it, or {flag} to write another")
    if batch_size is not None and batch_size < 1:
        raise DataError(f"--batch-size must be at least 1, got {batch_size}")
    planner.configure(preset, patch_size, base_features, max_features, batch_size)
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints every configuration it considers
        planner.plan_experiment()
    plans = planner.plans
    plans["configurations"].pop("2d", None)
    fullres = plans["configurations"].get("3d_fullres")
    if fullres is None:
        raise DataError(f"dataset {dataset}: nnU-Net planned no 3-D configuration (the images are 2-D); the airway "
                        "networks are 3-D")
    stages = len(fullres["architecture"]["arch_kwargs"]["strides"])
    if preset == "plain" and stages < N_SCALES:
        raise DataError(f"dataset {dataset}: nnU-Net's topology for 3d_fullres (patch {fullres['patch_size']}) has "
                        f"{stages} resolution stages, the paper's network {N_SCALES}; give a larger --patch-size "
                        f"(at least {4 * 2 ** (N_SCALES - 1)} voxels along the finer axes)")
    plans["airway_planner"] = {
        "preset": preset, "gpu_memory_target_gb": gpu_memory, "sized_for": SIZED_FOR,
        "patch_size_given": patch_size is not None, "batch_size_given": batch_size is not None,
        "features": {"base": planner.UNet_base_num_features, "max": planner.UNet_max_features_3d},
        "estimates": {c: planner.estimates[cfg["data_identifier"]] for c, cfg in plans["configurations"].items()
                      if "data_identifier" in cfg and cfg["data_identifier"] in planner.estimates},
        "method": "nnU-Net's feature-map count of its own network for these arch_kwargs x the ratio of activations "
                  "autograd keeps (airway network / nnU-Net's), converted to GiB with nnU-Net's reference values",
    }
    recursive_fix_for_json_export(plans)
    path = write_json(target, plans)
    twin_path = None
    if nnunet_plans_name:
        twin = nnunet_twin(plans, planner.nnunet_architectures, nnunet_plans_name)
        recursive_fix_for_json_export(twin)
        twin_path = write_json(twin_target, twin)
    data_root = Path(preprocessed_root) / planner.dataset_name
    missing = {c: str(data_root / cfg["data_identifier"]) for c, cfg in plans["configurations"].items()
               if "data_identifier" in cfg and not (data_root / cfg["data_identifier"]).is_dir()}
    return PlanResult(path, plans, missing, twin_path)
