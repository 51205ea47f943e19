"""Plans -> FRADUNet: the first five stages are used; plans that cannot give the paper's network are refused
with a message saying what to change."""

from __future__ import annotations

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_airway.trainers.network import build_fradunet, check_plans_for_fradunet


def configuration(patch_size: list[int], strides: list[list[int]], features: list[int] | None = None,
                  kernels: list[list[int]] | None = None) -> ConfigurationManager:
    n = len(strides)
    return ConfigurationManager({
        "patch_size": patch_size,
        "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": n,
                "features_per_stage": features or [2 * 2**i for i in range(n)],
                "kernel_sizes": kernels or [[3, 3, 3]] * n,
                "strides": strides,
            },
            "_kw_requires_import": [],
        },
    })


FIVE_STAGES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]  # total stride (8, 16, 16)


@pytest.mark.parametrize(("patch", "strides", "outputs", "message"), [
    ([48, 64, 64], FIVE_STAGES[:4], 2, r"has 4 resolution stages .* needs 5 .* make 'patch_size' larger"),
    ([44, 64, 64], FIVE_STAGES, 2, r"patch_size \[44, 64, 64\] is not divisible by \[8, 16, 16\].*e\.g\. \[48, 64, 64\]"),
    ([64, 64], [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]], 2, r"3-D network .* not 2d"),
    ([48, 64, 64], FIVE_STAGES, 3, r"2 outputs.*'airway': 1"),
])
def test_plans_that_cannot_give_the_network_say_what_to_change(patch, strides, outputs, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_plans_for_fradunet(configuration(patch, strides), outputs)


def test_deeper_plans_are_cut_to_their_first_five_stages() -> None:
    six = [*FIVE_STAGES, [2, 2, 2]]
    features = [2, 4, 8, 16, 16, 16]
    kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
    network = build_fradunet(configuration([16, 32, 32], six, features, kernels), 1, 2,
                             recalibration="fr", deep_supervision=False)
    five = build_fradunet(configuration([16, 32, 32], FIVE_STAGES, features[:5], kernels[:5]), 1, 2,
                          recalibration="fr", deep_supervision=False)
    assert network.state_dict().keys() == five.state_dict().keys()
    assert [p.shape for p in network.parameters()] == [p.shape for p in five.parameters()]
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 16, 32, 32)).shape == (1, 2, 16, 32, 32)


def test_plans_of_another_network_class_are_refused_not_built_as_a_plain_unet() -> None:
    """nnUNetResEncUNetMPlans once trained a plain five-scale U-Net without a word; now the residual encoder is
    built (test_resenc_plans.py) and any other class is refused, naming the supported ones."""
    plans = configuration([48, 64, 64], FIVE_STAGES)
    plans.configuration["architecture"]["network_class_name"] = \
        "dynamic_network_architectures.architectures.unet.ResidualUNet"
    with pytest.raises(ValueError, match=r"ResidualUNet .* PlainConvUNet plans .* ResidualEncoderUNet plans"):
        check_plans_for_fradunet(plans, 2)
    with pytest.raises(ValueError, match="ResidualUNet"):
        build_fradunet(plans, 1, 2, recalibration="fr", deep_supervision=False)
    check_plans_for_fradunet(configuration([48, 64, 64], FIVE_STAGES), 2)  # the plain U-Net's plans pass
