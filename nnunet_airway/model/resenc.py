"""FR and AD on nnU-Net's residual-encoder U-Net (Isensee et al., MICCAI 2024): dynamic-network-architectures'
``ResidualEncoder`` (its stem, residual blocks and strided convolutions, unchanged) with a recalibration block
at the end of every encoder stage, and the plain decoder of ``ResidualEncoderUNet`` (transposed convolution,
skip concatenation, conv + norm + nonlinearity) with a recalibration block at the end of every decoder stage,
as Qin et al. 2020 place FR at the end of every scale. Attention distillation reads the decoder outputs exactly
as on the plain FR/AD U-Net (``forward(x, return_decoder_features=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from dynamic_network_architectures.building_blocks.residual import BasicBlockD, BottleneckD
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import Tensor, nn

from nnunet_airway.model.unet import (
    NONLINEARITIES,
    RECALIBRATIONS,
    ConvStage,
    Decoder,
    FRADUNet,
    _make_recalibration,
    _triples,
)

BLOCKS = {"BasicBlockD": BasicBlockD, "BottleneckD": BottleneckD}


def _ints(values: int | Sequence[int], n_stages: int, name: str) -> list[int]:
    items = [values] * n_stages if isinstance(values, int) else [int(v) for v in values]
    if len(items) != n_stages or min(items) < 1:
        raise ValueError(f"{name} needs one positive entry per stage ({n_stages}), got {values!r}")
    return items


class ResEncFRADUNet(nn.Module):
    """The residual-encoder U-Net of nnU-Net's ResEnc presets with FR (or PE, cSE, none) at the end of every
    encoder and decoder stage.

    Args (as nnU-Net's ``ResidualEncoderUNet`` arch_kwargs, plus the recalibration's):
        input_channels, num_classes, patch_size (D, H, W; FR is sized from it).
        features_per_stage, strides, kernel_sizes: per stage, as in the plans.
        n_blocks_per_stage: residual blocks per encoder stage; n_conv_per_stage_decoder: convolutions per
            decoder stage (one entry per decoder stage, or an int).
        block: "BasicBlockD" (the presets) or "BottleneckD"; bottleneck_channels for the latter.
        stem_channels: the stem's output channels (None: features_per_stage[0]); the stem is one conv block.
        conv_bias: bias in the convolutions (the presets: True). nonlin: "leaky_relu" (slope 1e-2, the presets)
            or "relu"; the norm is InstanceNorm3d(eps 1e-5, affine), as the presets plan it.
        recalibration, reduction, fr_bias, memory_efficient, foreground_prior, deep_supervision: as in
            :class:`~nnunet_airway.model.unet.FRADUNet`.

    ``forward`` is FRADUNet's: logits (or a list, finest first, with deep supervision), and the decoder outputs
    coarse to fine with ``return_decoder_features=True``. The encoder's recalibration acts on the residual
    stage's (already activated) output, so no activation is fused into it.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        patch_size: Sequence[int],
        features_per_stage: Sequence[int],
        strides: Sequence[int | Sequence[int]],
        kernel_sizes: int | Sequence[int | Sequence[int]],
        n_blocks_per_stage: int | Sequence[int],
        n_conv_per_stage_decoder: int | Sequence[int] = 1,
        block: str = "BasicBlockD",
        bottleneck_channels: int | Sequence[int] | None = None,
        stem_channels: int | None = None,
        conv_bias: bool = True,
        nonlin: str = "leaky_relu",
        recalibration: str | None = "fr",
        deep_supervision: bool = False,
        reduction: int = 2,
        fr_bias: bool = False,
        memory_efficient: bool = True,
        foreground_prior: float | None = None,
    ) -> None:
        super().__init__()
        if recalibration not in RECALIBRATIONS:
            raise ValueError(f"recalibration must be one of {RECALIBRATIONS}, got {recalibration!r}")
        if nonlin not in NONLINEARITIES:
            raise ValueError(f"nonlin must be one of {tuple(NONLINEARITIES)}, got {nonlin!r}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {tuple(BLOCKS)}, got {block!r}")
        if foreground_prior is not None and (not 0.0 < foreground_prior < 1.0 or num_classes < 2):
            raise ValueError(f"foreground_prior must be None or in (0, 1) with num_classes >= 2, got "
                             f"{foreground_prior!r} and {num_classes}")
        features = [int(f) for f in features_per_stage]
        n_stages = len(features)
        if n_stages < 2 or min(features) < 1:
            raise ValueError(f"features_per_stage needs at least 2 positive entries, got {features_per_stage!r}")
        stride_list = _triples(strides, n_stages, "strides")
        kernel_list = _triples(kernel_sizes, n_stages, "kernel_sizes")
        blocks = _ints(n_blocks_per_stage, n_stages, "n_blocks_per_stage")
        decoder_convs = _ints(n_conv_per_stage_decoder, n_stages - 1, "n_conv_per_stage_decoder")
        patch = tuple(int(s) for s in patch_size)
        if len(patch) != 3:
            raise ValueError(f"patch_size must be (D, H, W), got {patch_size!r}")
        sizes = FRADUNet._stage_sizes(patch, stride_list)  # type: ignore[arg-type]

        self.input_channels = input_channels
        self.num_classes = num_classes
        self.patch_size = patch
        self.stage_sizes = sizes
        self.strides = stride_list
        self.recalibration = recalibration
        negative_slope = NONLINEARITIES[nonlin]
        activation = nn.LeakyReLU if negative_slope else nn.ReLU
        activation_kwargs = {"negative_slope": negative_slope, "inplace": True} if negative_slope else {"inplace": True}

        self.encoder = ResidualEncoder(
            input_channels, n_stages, features, nn.Conv3d, kernel_list, stride_list, blocks, conv_bias,
            nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, activation, activation_kwargs,
            block=BLOCKS[block], bottleneck_channels=bottleneck_channels, return_skips=True,
            stem_channels=stem_channels,
        )
        self.encoder_recalibrations = nn.ModuleList(
            _make_recalibration(recalibration, features[s], sizes[s], reduction, fr_bias, memory_efficient)
            or nn.Identity() for s in range(n_stages))

        upsamplers, stages, seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for index, s in enumerate(range(n_stages - 2, -1, -1)):
            up = stride_list[s + 1]
            upsamplers.append(nn.ConvTranspose3d(features[s + 1], features[s], up, up, bias=conv_bias))
            recal = _make_recalibration(recalibration, features[s], sizes[s], reduction, fr_bias, memory_efficient)
            stages.append(ConvStage(2 * features[s], features[s], kernel_list[s], decoder_convs[index], (1, 1, 1),
                                    conv_bias, negative_slope, recal))
            seg_layers.append(nn.Conv3d(features[s], num_classes, 1, bias=True))
        self.decoder = Decoder(stages, upsamplers, seg_layers, deep_supervision)
        self._initialise(foreground_prior)

    def _initialise(self, foreground_prior: float | None) -> None:
        """As ``ResidualEncoderUNet.initialize``: InitWeights_He(1e-2) on every (transposed) convolution and the
        last norm of each residual block at 0, except inside the recalibration blocks, which keep their own; then
        the prior initialisation of the output convolutions when ``foreground_prior`` is given."""
        recalibration_modules = {id(m) for r in self.encoder_recalibrations for m in r.modules()}
        recalibration_modules |= {id(m) for stage in self.decoder.stages if stage.recalibration is not None
                                  for m in stage.recalibration.modules()}
        initialise = InitWeights_He(1e-2)
        for module in self.modules():
            if id(module) not in recalibration_modules:
                initialise(module)
                init_last_bn_before_add_to_0(module)
        if foreground_prior is None:
            return
        foreground = foreground_prior / (self.num_classes - 1)
        with torch.no_grad():
            for seg_layer in self.decoder.seg_layers:
                nn.init.normal_(seg_layer.weight, std=0.01)
                seg_layer.bias.fill_(math.log(foreground))
                seg_layer.bias[0] = math.log(1.0 - foreground_prior)

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = enabled

    def forward(self, x: Tensor, return_decoder_features: bool = False
                ) -> Tensor | list[Tensor] | tuple[Tensor | list[Tensor], list[Tensor]]:
        if x.dim() != 5 or x.shape[1] != self.input_channels:
            raise ValueError(f"ResEncFRADUNet expects input (N, {self.input_channels}, D, H, W), got {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        if size != self.patch_size:
            if self.recalibration == "fr":
                raise ValueError(f"ResEncFRADUNet with FR was built for patch size {self.patch_size}, got input {size}")
            FRADUNet._stage_sizes(size, self.strides)  # type: ignore[arg-type]
        skips = []
        for stage_output, recalibrate in zip(self.encoder(x), self.encoder_recalibrations, strict=True):
            skips.append(recalibrate(stage_output) if not isinstance(recalibrate, nn.Identity) else stage_output)
        seg_outputs, features = self.decoder(skips, return_decoder_features)
        outputs = seg_outputs if self.decoder.deep_supervision else seg_outputs[0]
        return (outputs, features) if return_decoder_features else outputs
