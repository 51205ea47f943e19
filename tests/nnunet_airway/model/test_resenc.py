"""FR/AD on nnU-Net's residual encoder (model/resenc.py): without recalibration it is dynamic-network-
architectures' ResidualEncoderUNet, value for value; with it, one block at the end of every stage."""

from __future__ import annotations

import pytest
import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from dynamic_network_architectures.building_blocks.residual import BasicBlockD
from torch import nn

from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite
from nnunet_airway.model.resenc import ResEncFRADUNet

FEATURES, STRIDES, BLOCKS, DECODER_CONVS = [4, 8, 16, 16], [1, 2, 2, [1, 2, 2]], [1, 2, 3, 2], [1, 1, 2]
PATCH = (16, 32, 32)


def airway_network(recalibration: str | None, deep_supervision: bool = True) -> ResEncFRADUNet:
    return ResEncFRADUNet(1, 2, PATCH, FEATURES, STRIDES, 3, BLOCKS, DECODER_CONVS, recalibration=recalibration,
                          deep_supervision=deep_supervision)


def nnunet_network() -> ResidualEncoderUNet:
    return ResidualEncoderUNet(1, len(FEATURES), FEATURES, nn.Conv3d, 3, STRIDES, BLOCKS, 2, DECODER_CONVS,
                               conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                               nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=True)


def test_without_recalibration_it_is_nnunets_residual_encoder_unet() -> None:
    torch.manual_seed(0)
    ours, theirs = airway_network(None), nnunet_network()
    # the encoder is theirs, module for module; the decoder's parameters come in the same order
    ours_params, theirs_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    encoder = [name for name in theirs_params if name.startswith("encoder.")]
    assert encoder and all(theirs_params[name].shape == ours_params[name].shape for name in encoder)
    decoder_theirs = [p for name, p in theirs.named_parameters() if name.startswith("decoder.")
                      and not name.startswith("decoder.encoder.")]
    decoder_ours = [p for name, p in ours.named_parameters() if name.startswith("decoder.")]

    def paired_decoder_parameters() -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per decoder stage: the transposed convolution, each conv and its norm, the head."""
        pairs = []
        for s in range(len(FEATURES) - 1):
            modules = [(ours.decoder.upsamplers[s], theirs.decoder.transpconvs[s])]
            for index, block in enumerate(theirs.decoder.stages[s].convs):
                modules += [(ours.decoder.stages[s].convs[index], block.conv),
                            (ours.decoder.stages[s].norms[index], block.norm)]
            modules.append((ours.decoder.seg_layers[s], theirs.decoder.seg_layers[s]))
            pairs += [pair for a, b in modules for pair in zip(a.parameters(), b.parameters(), strict=True)]
        return pairs

    assert sum(p.numel() for p in decoder_ours) == sum(p.numel() for p in decoder_theirs)
    with torch.no_grad():
        for name in encoder:
            ours_params[name].copy_(theirs_params[name])
        pairs = paired_decoder_parameters()
        assert len(pairs) == len(decoder_ours) == len(decoder_theirs)
        for mine, yours in pairs:
            assert mine.shape == yours.shape
            mine.copy_(yours)
        x = torch.randn(2, 1, *PATCH)
        for a, b in zip(ours.eval()(x), theirs.eval()(x), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("recalibration", "kind"), [("fr", FeatureRecalibration), ("pe", ProjectExcite),
                                                      ("cse", ChannelSE)])
def test_blocks_as_given_and_one_recalibration_at_the_end_of_every_stage(recalibration: str, kind: type) -> None:
    network = airway_network(recalibration)
    stages = network.encoder.stages
    assert [sum(isinstance(m, BasicBlockD) for m in stage.modules()) for stage in stages] == BLOCKS
    assert network.encoder.stem is not None  # the residual encoder's stem, as the presets build it
    assert all(isinstance(r, kind) for r in network.encoder_recalibrations)
    assert all(isinstance(stage.recalibration, kind) for stage in network.decoder.stages)
    assert sum(isinstance(m, kind) for m in network.modules()) == 2 * len(FEATURES) - 1
    assert [len(stage.convs) for stage in network.decoder.stages] == DECODER_CONVS


@pytest.mark.parametrize("recalibration", ["fr", "pe", "cse", None])
def test_a_step_gives_finite_gradients_and_the_decoder_features_for_distillation(recalibration: str | None) -> None:
    torch.manual_seed(1)
    network = airway_network(recalibration)
    outputs, features = network(torch.randn(2, 1, *PATCH), return_decoder_features=True)
    assert [tuple(o.shape[2:]) for o in outputs] == [(16, 32, 32), (8, 16, 16), (4, 8, 8)]
    assert [f.shape[1] for f in features] == FEATURES[-2::-1]
    sum(o.float().mean() for o in outputs).backward()
    grads = [p.grad for p in network.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_fr_refuses_another_patch_size_and_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="patch size"):
        airway_network("fr")(torch.zeros(1, 1, 16, 32, 64))
    with pytest.raises(ValueError, match="block"):
        ResEncFRADUNet(1, 2, PATCH, FEATURES, STRIDES, 3, BLOCKS, block="ResNeXt")
    with pytest.raises(ValueError, match="n_blocks_per_stage"):
        ResEncFRADUNet(1, 2, PATCH, FEATURES, STRIDES, 3, [1, 2])
