"""The FR/AD U-Net of Qin et al. 2020: a plain 3-D U-Net with recalibration at the end of every scale."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite

Triple = tuple[int, int, int]
RECALIBRATIONS = ("fr", "pe", "cse", None)
NONLINEARITIES = {"relu": 0.0, "leaky_relu": 1e-2}


def _triples(values: int | Sequence[int | Sequence[int]], n_stages: int, name: str) -> list[Triple]:
    """Per-stage 3-tuples from an int, a per-stage list of ints, or a per-stage list of 3-sequences."""
    items = [values] * n_stages if isinstance(values, int) else list(values)
    if len(items) != n_stages:
        raise ValueError(f"{name} needs one entry per stage ({n_stages}), got {len(items)}: {values!r}")
    out = []
    for item in items:
        triple = (item,) * 3 if isinstance(item, int) else tuple(int(v) for v in item)
        if len(triple) != 3 or min(triple) < 1:
            raise ValueError(f"{name} entries must be positive ints or 3-tuples, got {item!r}")
        out.append(triple)
    return out


def _make_recalibration(kind: str | None, channels: int, size: Triple, reduction: int, fr_bias: bool,
                        memory_efficient: bool) -> nn.Module | None:
    if kind == "fr":
        return FeatureRecalibration(channels, size, reduction, fr_bias, memory_efficient)
    if kind == "pe":
        return ProjectExcite(channels, reduction, memory_efficient)
    if kind == "cse":
        return ChannelSE(channels, reduction)
    return None


class ConvStage(nn.Module):
    """n x (Conv3d + InstanceNorm3d(affine) + (leaky) ReLU), then optional recalibration of the last output.

    The last activation is fused into the recalibration block so that only its output is stored.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Triple, n_convs: int, first_stride: Triple,
                 conv_bias: bool, negative_slope: float, recalibration: nn.Module | None) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for index in range(n_convs):
            stride = first_stride if index == 0 else 1
            channels_in = in_channels if index == 0 else out_channels
            self.convs.append(nn.Conv3d(channels_in, out_channels, kernel_size, stride, padding, bias=conv_bias))
            self.norms.append(nn.InstanceNorm3d(out_channels, eps=1e-5, affine=True))
        self.negative_slope = negative_slope
        self.recalibration = recalibration

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.convs) - 1
        for index, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            x = norm(conv(x))
            if index == last and self.recalibration is not None:
                x = self.recalibration.recalibrate(x, self.negative_slope)
            elif self.negative_slope == 0:
                x = torch.relu_(x)
            else:
                x = nn.functional.leaky_relu_(x, self.negative_slope)
        return x


class Decoder(nn.Module):
    """Upsampling, skip concatenation and conv stages; ``deep_supervision`` is what nnU-Net toggles.

    Segmentation heads (1x1x1 convs) exist for every decoder stage whatever the flag, so checkpoints load
    either way.
    """

    def __init__(self, stages: nn.ModuleList, upsamplers: nn.ModuleList, seg_layers: nn.ModuleList,
                 deep_supervision: bool) -> None:
        super().__init__()
        self.stages = stages
        self.upsamplers = upsamplers
        self.seg_layers = seg_layers
        self.deep_supervision = deep_supervision

    def forward(self, skips: list[Tensor], keep_features: bool) -> tuple[list[Tensor], list[Tensor]]:
        """skips: encoder outputs, finest first. Returns (logits per scale, finest first; decoder outputs,
        coarsest first, when ``keep_features``, else [])."""
        x = skips[-1]
        seg_outputs: list[Tensor] = []
        features: list[Tensor] = []
        last = len(self.stages) - 1
        for index, (upsample, stage) in enumerate(zip(self.upsamplers, self.stages, strict=True)):
            x = stage(torch.cat((upsample(x), skips[-(index + 2)]), dim=1))
            if keep_features:
                features.append(x)
            if self.deep_supervision or index == last:
                seg_outputs.append(self.seg_layers[index](x))
        return seg_outputs[::-1], features


class FRADUNet(nn.Module):
    """3-D U-Net with feature recalibration (FR) and attention distillation (AD), Qin et al. MICCAI 2020.

    Args:
        input_channels, num_classes: image channels and output classes (2 for airway vs background).
        patch_size: (D, H, W) of the training patch; FR weights are sized from it, so inference must use the
            same patch size (nnU-Net's sliding window does).
        features_per_stage: channels per scale (paper: 5 scales, 16-32-64-128-256; nnU-Net: 32-64-128-256-320).
        strides: per-stage downsampling (ints or 3-tuples; the first is normally 1), as in nnU-Net plans.
        recalibration: "fr" (paper), "pe" (Project & Excite), "cse" (AnatomyNet cSE) or None, applied at the
            end of every encoder and decoder scale.
        deep_supervision: return the list of logits (full resolution first) instead of one tensor; the same
            as ``decoder.deep_supervision``, which nnU-Net's ``set_deep_supervision_enabled`` sets.
        kernel_sizes: per-stage conv kernel sizes (int, ints or 3-tuples); 3 in the paper.
        n_conv_per_stage, n_conv_per_stage_decoder: convolutions per scale (2 in the paper).
        conv_bias: bias in the 3x3x3 convolutions (nnU-Net: True).
        nonlin: "relu" (paper) or "leaky_relu" (slope 1e-2, nnU-Net).
        downsampling: "max_pool" (paper and released code) or "conv" (strided first conv, nnU-Net).
        upsampling: "transpconv" (3-D U-Net, nnU-Net) or "nearest" (released code; concatenates the upsampled
            coarse channels with the skip).
        reduction: excitation reduction r (paper 2). fr_bias: the released code's biased axis weights.
        memory_efficient: FR/PE through the recomputing autograd Function (same values, less memory).
        foreground_prior: None (PyTorch's default initialisation of the 1x1 output convolutions) or the
            probability pi in (0, 1) every foreground class together should start at: the output convolutions
            start with weights N(0, 0.01^2) and biases giving softmax probabilities (1 - pi, pi / (C - 1), ...),
            the prior initialisation of the focal loss paper (Lin et al., ICCV 2017, section 4.1). Without it
            a network trained with Dice + focal loss starts at p = 0.5 everywhere, and the focal term barely
            pushes the background down from there (docs/model.md).

    ``forward(x)``: x (N, input_channels, *patch_size) -> logits (N, num_classes, *patch_size), or a list of
    logits per decoder scale (full resolution first) when deep supervision is on. ``forward(x,
    return_decoder_features=True)`` -> (that, decoder outputs): the outputs of the decoder scales, coarse to fine
    (bottleneck excluded), as attention distillation and the attention maps take them; they are the
    recalibrated outputs (the released code takes the maps from the recalibration's input). ``forward`` keeps
    no state between calls. The parameter set does not depend on ``deep_supervision``.
    """

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        patch_size: Sequence[int],
        features_per_stage: Sequence[int] = (32, 64, 128, 256, 320),
        strides: int | Sequence[int | Sequence[int]] = (1, 2, 2, 2, 2),
        recalibration: str | None = "fr",
        deep_supervision: bool = False,
        kernel_sizes: int | Sequence[int | Sequence[int]] = 3,
        n_conv_per_stage: int = 2,
        n_conv_per_stage_decoder: int = 2,
        conv_bias: bool = True,
        nonlin: str = "relu",
        downsampling: str = "max_pool",
        upsampling: str = "transpconv",
        reduction: int = 2,
        fr_bias: bool = False,
        memory_efficient: bool = True,
        foreground_prior: float | None = None,
    ) -> None:
        super().__init__()
        if foreground_prior is not None and not 0.0 < foreground_prior < 1.0:
            raise ValueError(f"foreground_prior must be None or in (0, 1), got {foreground_prior!r}")
        if num_classes < 2 and foreground_prior is not None:
            raise ValueError(f"foreground_prior needs a softmax output with num_classes >= 2, got {num_classes}")
        if recalibration not in RECALIBRATIONS:
            raise ValueError(f"recalibration must be one of {RECALIBRATIONS}, got {recalibration!r}")
        if nonlin not in NONLINEARITIES:
            raise ValueError(f"nonlin must be one of {tuple(NONLINEARITIES)}, got {nonlin!r}")
        if downsampling not in ("max_pool", "conv"):
            raise ValueError(f'downsampling must be "max_pool" or "conv", got {downsampling!r}')
        if upsampling not in ("transpconv", "nearest"):
            raise ValueError(f'upsampling must be "transpconv" or "nearest", got {upsampling!r}')
        features = [int(f) for f in features_per_stage]
        n_stages = len(features)
        if n_stages < 2 or min(features) < 1:
            raise ValueError(f"features_per_stage needs at least 2 positive entries, got {features_per_stage!r}")
        if n_conv_per_stage < 1 or n_conv_per_stage_decoder < 1:
            raise ValueError("n_conv_per_stage and n_conv_per_stage_decoder must be >= 1, got "
                             f"{n_conv_per_stage} and {n_conv_per_stage_decoder}")
        stride_list = _triples(strides, n_stages, "strides")
        kernel_list = _triples(kernel_sizes, n_stages, "kernel_sizes")
        patch = tuple(int(s) for s in patch_size)
        if len(patch) != 3:
            raise ValueError(f"patch_size must be (D, H, W), got {patch_size!r}")
        sizes = self._stage_sizes(patch, stride_list)

        self.input_channels = input_channels
        self.num_classes = num_classes
        self.patch_size = patch
        self.stage_sizes = sizes
        self.strides = stride_list
        self.recalibration = recalibration
        negative_slope = NONLINEARITIES[nonlin]

        def recal(channels: int, size: Triple) -> nn.Module | None:
            return _make_recalibration(recalibration, channels, size, reduction, fr_bias, memory_efficient)

        self.downsamplers = nn.ModuleList()
        self.encoder = nn.ModuleList()
        for s in range(n_stages):
            channels_in = input_channels if s == 0 else features[s - 1]
            pooled = downsampling == "max_pool" and stride_list[s] != (1, 1, 1)
            self.downsamplers.append(nn.MaxPool3d(stride_list[s], stride_list[s]) if pooled else nn.Identity())
            conv_stride = (1, 1, 1) if downsampling == "max_pool" else stride_list[s]
            self.encoder.append(ConvStage(channels_in, features[s], kernel_list[s], n_conv_per_stage, conv_stride,
                                          conv_bias, negative_slope, recal(features[s], sizes[s])))

        upsamplers, stages, seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for s in range(n_stages - 2, -1, -1):
            up_stride = stride_list[s + 1]
            if upsampling == "transpconv":
                upsamplers.append(nn.ConvTranspose3d(features[s + 1], features[s], up_stride, up_stride, bias=conv_bias))
                channels_in = 2 * features[s]
            else:
                upsamplers.append(nn.Upsample(scale_factor=up_stride, mode="nearest"))
                channels_in = features[s + 1] + features[s]
            stages.append(ConvStage(channels_in, features[s], kernel_list[s], n_conv_per_stage_decoder, (1, 1, 1),
                                    conv_bias, negative_slope, recal(features[s], sizes[s])))
            seg_layers.append(nn.Conv3d(features[s], num_classes, 1, bias=True))
        self.decoder = Decoder(stages, upsamplers, seg_layers, deep_supervision)
        self._initialise(foreground_prior)

    @staticmethod
    def _stage_sizes(patch: Triple, strides: list[Triple]) -> list[Triple]:
        sizes, current = [], patch
        for s, stride in enumerate(strides):
            if any(c % st for c, st in zip(current, stride, strict=True)):
                raise ValueError(
                    f"patch size {patch} cannot be divided by the strides {strides}: at stage {s} the size "
                    f"{current} is not divisible by stride {stride}"
                )
            current = tuple(c // st for c, st in zip(current, stride, strict=True))
            sizes.append(current)
        return sizes

    def _initialise(self, foreground_prior: float | None) -> None:
        """nnU-Net's ``InitWeights_He(1e-2)`` on every convolution and transposed convolution of the U-Net
        (Kaiming normal with a = 1e-2, zero bias): the stages, the upsampling and the output heads. The
        recalibration blocks keep their own initialisation; the output convolutions then get the prior
        initialisation when ``foreground_prior`` is given."""
        convolutions = [conv for stage in [*self.encoder, *self.decoder.stages] for conv in stage.convs]
        convolutions += [m for m in self.decoder.upsamplers if isinstance(m, nn.ConvTranspose3d)]
        convolutions += list(self.decoder.seg_layers)
        for conv in convolutions:
            nn.init.kaiming_normal_(conv.weight, a=1e-2)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
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
            raise ValueError(f"FRADUNet expects input (N, {self.input_channels}, D, H, W), got {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        if size != self.patch_size:
            if self.recalibration == "fr":
                raise ValueError(f"FRADUNet with FR was built for patch size {self.patch_size}, got input {size}")
            self._stage_sizes(size, self.strides)
        skips = []
        for downsample, stage in zip(self.downsamplers, self.encoder, strict=True):
            x = stage(downsample(x))
            skips.append(x)
        seg_outputs, features = self.decoder(skips, return_decoder_features)
        outputs = seg_outputs if self.decoder.deep_supervision else seg_outputs[0]
        return (outputs, features) if return_decoder_features else outputs
