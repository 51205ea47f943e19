"""Residual-encoder plans (nnU-Net's ResEnc presets) -> the residual encoder with FR/AD, for every airway trainer;
plans whose keys the network would ignore are refused, naming them."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_airway.image_io import read_image
from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite
from nnunet_airway.model.resenc import ResEncFRADUNet
from nnunet_airway.model.unet import FRADUNet
from nnunet_airway.trainers.declarations import DECLARATIONS
from nnunet_airway.trainers.network import RESIDUAL_ENCODER_UNET, build_airway_network, network_depth
from nnunet_airway.trainers.variants import TRAINERS

RECALIBRATION_CLASSES = {"fr": FeatureRecalibration, "pe": ProjectExcite, "cse": ChannelSE}


def resenc_configuration(patch: list[int], features: list[int], strides: list[list[int]], blocks: list[int],
                         kernels: list[list[int]] | None = None) -> dict:
    """A 3d configuration as nnU-Net's ResEnc planners write it (arch_kwargs and the classes by name)."""
    n = len(features)
    return {
        "patch_size": patch, "data_identifier": "nnUNetPlans_3d_fullres",
        "architecture": {
            "network_class_name": RESIDUAL_ENCODER_UNET,
            "arch_kwargs": {
                "n_stages": n, "features_per_stage": features, "conv_op": "torch.nn.modules.conv.Conv3d",
                "kernel_sizes": kernels or [[3, 3, 3]] * n, "strides": strides, "n_blocks_per_stage": blocks,
                "n_conv_per_stage_decoder": [1] * (n - 1), "conv_bias": True,
                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        },
    }


TINY = resenc_configuration([16, 32, 32], [4, 8, 16, 16, 16], [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                            [1, 2, 2, 2, 2])


@pytest.mark.parametrize("declaration", DECLARATIONS, ids=lambda d: d.name)
def test_every_airway_trainer_builds_the_plans_residual_encoder_with_its_recalibration(declaration) -> None:
    manager = ConfigurationManager(copy.deepcopy(TINY))
    network = TRAINERS[declaration.name].build_network_architecture(None, manager, 1, 2, True)
    assert isinstance(network, ResEncFRADUNet) and network_depth(manager) == 5
    arch = TINY["architecture"]["arch_kwargs"]
    assert [sum(isinstance(m, BasicBlockD) for m in stage.modules()) for stage in network.encoder.stages] == \
        arch["n_blocks_per_stage"]
    found = [m for m in network.modules() if isinstance(m, tuple(RECALIBRATION_CLASSES.values()))]
    kind = RECALIBRATION_CLASSES.get(declaration.recalibration)
    if kind is None:
        assert not found
    else:  # the end of every encoder and decoder stage
        assert len(found) == 2 * arch["n_stages"] - 1 and all(type(m) is kind for m in found)
    outputs, features = network(torch.zeros(1, 1, 16, 32, 32), return_decoder_features=True)
    assert len(outputs) == len(features) == arch["n_stages"] - 1


def test_plain_plans_still_give_the_papers_unet() -> None:
    plain = copy.deepcopy(TINY)
    plain["architecture"]["network_class_name"] = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    network = build_airway_network(ConfigurationManager(plain), 1, 2, recalibration="fr", deep_supervision=False)
    assert isinstance(network, FRADUNet)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("dropout_op", "torch.nn.modules.dropout.Dropout3d", r"dropout_op is 'torch.nn.modules.dropout.Dropout3d'"),
    ("norm_op", "torch.nn.modules.batchnorm.BatchNorm3d", "norm_op"),
    ("nonlin_kwargs", {"negative_slope": 0.2}, "negative_slope 0.2"),
    ("squeeze_excitation", True, "squeeze_excitation, which the airway network does not build"),
])
def test_plans_with_keys_the_network_would_ignore_are_refused_naming_them(key: str, value: object,
                                                                          message: str) -> None:
    plans = copy.deepcopy(TINY)
    plans["architecture"]["arch_kwargs"][key] = value
    with pytest.raises(ValueError, match=message):
        build_airway_network(ConfigurationManager(plans), 1, 2, recalibration="fr", deep_supervision=False)


RESENC_TINY_PLANS = "nnUNetResEncPlansTiny"


@pytest.mark.slow
def test_real_nnunet_commands_train_and_predict_from_residual_encoder_plans(phantom_dataset, tmp_path) -> None:
    """nnunet-airway plan --preset resenc-m, then nnUNetv2_train and nnUNetv2_predict -p <those plans> on the tiny
    phantoms: the checkpoint holds the residual encoder with FR, and the prediction lies on the image's grid."""
    phantom_dataset.run("nnunet-airway", "plan", "-d", str(phantom_dataset.dataset_id), "--preset", "resenc-m",
                        "--plans-name", RESENC_TINY_PLANS, "--patch-size", "32", "64", "64", "--base-features", "4",
                        "--max-features", "16", "--overwrite")
    plans = json.loads((phantom_dataset.preprocessed / f"{RESENC_TINY_PLANS}.json").read_text())
    config = plans["configurations"][phantom_dataset.configuration]
    assert config["architecture"]["network_class_name"] == RESIDUAL_ENCODER_UNET
    assert config["data_identifier"] == "nnUNetPlans_3d_fullres"  # nnU-Net's preprocessed data, reused

    trainer = phantom_dataset.test_trainer
    train = [a if a != phantom_dataset.plans else RESENC_TINY_PLANS for a in phantom_dataset.train_argv(trainer)]
    phantom_dataset.run(*train, env=phantom_dataset.env(AIRWAY_TEST_EPOCHS="1"))
    folder = phantom_dataset.results / f"{trainer}__{RESENC_TINY_PLANS}__{phantom_dataset.configuration}" / "fold_0"
    state = torch.load(folder / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert any(".blocks.1." in key for key in state)  # a second residual block in a stage
    assert any(key.startswith("encoder_recalibrations.0.") for key in state)

    images, out = phantom_dataset.raw / "imagesTs", tmp_path / "predicted"
    predict = [a if a != phantom_dataset.plans else RESENC_TINY_PLANS
               for a in phantom_dataset.predict_argv(trainer, images, out)]
    phantom_dataset.run(*predict)
    for case in phantom_dataset.test_cases:
        mask, geometry = read_image(out / f"{case}.nii.gz")
        _, image_geometry = read_image(images / f"{case}_0000.nii.gz")
        assert mask.shape == phantom_dataset.shape_zyx and geometry == image_geometry
        assert set(np.unique(mask)) <= {0, 1}
