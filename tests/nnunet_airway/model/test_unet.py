"""FRADUNet: shapes for anisotropic patches and strides, flags that never change parameters, errors."""

from __future__ import annotations

import pytest
import torch

from nnunet_airway.model.recalibration import FeatureRecalibration
from nnunet_airway.model.unet import FRADUNet

PATCH = (8, 16, 32)
FEATURES = (4, 8, 8, 16, 16)
STRIDES = (1, (1, 2, 2), 2, (2, 2, 2), (1, 2, 2))  # sizes (8,16,32) (8,8,16) (4,4,8) (2,2,4) (2,1,2)


def small_net(**kwargs) -> FRADUNet:
    options = dict(features_per_stage=FEATURES, strides=STRIDES)
    options.update(kwargs)
    return FRADUNet(1, 2, PATCH, **options)


@pytest.mark.parametrize("recalibration", ["fr", "pe", "cse", None])
def test_deep_supervision_outputs_and_decoder_features(recalibration) -> None:
    net = small_net(recalibration=recalibration, deep_supervision=True)
    x = torch.randn(2, 1, *PATCH)
    outputs, features = net(x, return_decoder_features=True)
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 8, 16, 32), (2, 2, 8, 8, 16), (2, 2, 4, 4, 8),
                                                 (2, 2, 2, 2, 4)]
    assert [tuple(f.shape) for f in features] == [(2, 16, 2, 2, 4), (2, 8, 4, 4, 8), (2, 8, 8, 8, 16),
                                                  (2, 4, 8, 16, 32)]
    # the finest feature is what the finest head reads
    torch.testing.assert_close(net.decoder.seg_layers[-1](features[-1]), outputs[0])


@pytest.mark.parametrize(
    "options",
    [dict(downsampling="conv", nonlin="leaky_relu"), dict(upsampling="nearest", fr_bias=True),
     dict(kernel_sizes=[(1, 3, 3), 3, 3, 3, 3], memory_efficient=False)],
)
def test_variants_return_plain_logits(options) -> None:
    net = small_net(**options)
    out = net(torch.randn(1, 1, *PATCH))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 2, *PATCH)


def test_fr_blocks_sized_for_every_stage() -> None:
    net = small_net()
    sizes = [m.spatial_size for m in net.modules() if isinstance(m, FeatureRecalibration)]
    assert sizes == [(8, 16, 32), (8, 8, 16), (4, 4, 8), (2, 2, 4), (2, 1, 2), (2, 2, 4), (4, 4, 8), (8, 8, 16),
                     (8, 16, 32)]


def test_nnunet_style_deep_supervision_switch() -> None:
    net = small_net(deep_supervision=True)
    assert isinstance(net(torch.randn(1, 1, *PATCH)), list)
    net.decoder.deep_supervision = False  # what nnUNetTrainer.set_deep_supervision_enabled does
    assert not net.deep_supervision
    assert isinstance(net(torch.randn(1, 1, *PATCH)), torch.Tensor)


def test_strict_state_dict_load_with_flags_flipped() -> None:
    trained = small_net(deep_supervision=True)
    other = small_net(deep_supervision=False)
    other.load_state_dict(trained.state_dict(), strict=True)
    x = torch.randn(1, 1, *PATCH)
    trained.eval()
    other.eval()
    with torch.no_grad():
        torch.testing.assert_close(other(x), trained(x)[0])


def test_forward_has_no_side_effects() -> None:
    """The network keeps nothing from a call: same attributes and tensors before and after, whether or not
    the decoder features are asked for, with or without gradients."""
    net = small_net()
    x = torch.randn(1, 1, *PATCH)
    attributes = dict(vars(net))
    state = {name: value.clone() for name, value in net.state_dict().items()}
    plain = net(x)
    with_features, _ = net(x, return_decoder_features=True)
    with torch.no_grad():
        net(x, return_decoder_features=True)
    assert vars(net) == attributes
    assert all(torch.equal(state[name], value) for name, value in net.state_dict().items())
    torch.testing.assert_close(plain, with_features)


def test_training_step_with_distillation_updates_fr_weights() -> None:
    from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation

    net = small_net(deep_supervision=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.5, 0.999))
    x = torch.randn(2, 1, *PATCH)
    target = (x > 1).float()
    loss_fn = SegmentationWithDistillation(DiceFocalLoss(), 0.1)
    before = net.encoder[0].recalibration.width_weights.detach().clone()
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = loss_fn(*_with_target(net(x, return_decoder_features=True), target))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert not torch.equal(before, net.encoder[0].recalibration.width_weights)


def _with_target(output_and_features: tuple, target: torch.Tensor) -> tuple:
    output, features = output_and_features
    return output, target, features


def test_patch_that_strides_cannot_divide_raises() -> None:
    with pytest.raises(ValueError, match=r"patch size \(8, 16, 20\).*stage 3.*\(4, 4, 5\).*\(2, 2, 2\)"):
        FRADUNet(1, 2, (8, 16, 20), FEATURES, STRIDES)


def test_other_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        FRADUNet(1, 2, PATCH, FEATURES, (1, 2, 2))
    with pytest.raises(ValueError, match="recalibration"):
        small_net(recalibration="se")
    with pytest.raises(ValueError, match="nonlin"):
        small_net(nonlin="gelu")
    with pytest.raises(ValueError, match=r"\(8, 16, 32\).*\(8, 16, 48\)"):
        small_net()(torch.zeros(1, 1, 8, 16, 48))
    with pytest.raises(ValueError, match=r"\(N, 1, D, H, W\)"):
        small_net()(torch.zeros(1, 2, *PATCH))


def test_non_fr_network_accepts_other_divisible_sizes_only() -> None:
    net = small_net(recalibration="pe")
    assert net(torch.randn(1, 1, 16, 16, 32)).shape == (1, 2, 16, 16, 32)
    with pytest.raises(ValueError, match="cannot be divided"):
        net(torch.randn(1, 1, 8, 16, 20))


@pytest.mark.parametrize("seed", range(8))
def test_network_is_finite_under_bfloat16_autocast_with_large_inputs(seed: int, cpu_bfloat16) -> None:
    from nnunet_airway.model.losses import DiceFocalLoss, SegmentationWithDistillation

    torch.manual_seed(seed)
    net = small_net(deep_supervision=True)
    x = 1e4 * torch.randn(1, 1, *PATCH)
    with cpu_bfloat16():
        outputs, features = net(x, return_decoder_features=True)
        loss = sum(DiceFocalLoss()(o, torch.zeros(1, 1, *o.shape[2:])) for o in outputs)
        loss = loss + SegmentationWithDistillation(DiceFocalLoss(), 0.1).distillation(features)
        loss.backward()  # inside: the backward pass picks its convolution kernels when it runs
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


@pytest.mark.parametrize(("num_classes", "prior", "expected"), [
    (2, 0.01, (0.99, 0.01)),
    (2, 0.2, (0.8, 0.2)),
    (3, 0.1, (0.9, 0.05, 0.05)),
])
def test_foreground_prior_sets_the_starting_probabilities(num_classes: int, prior: float, expected: tuple) -> None:
    torch.manual_seed(0)
    net = FRADUNet(1, num_classes, PATCH, FEATURES, STRIDES, deep_supervision=True, foreground_prior=prior)
    with torch.no_grad():
        outputs = net(torch.randn(2, 1, *PATCH))
    for logits in outputs:  # every deep-supervision head starts at the prior
        probabilities = torch.softmax(logits, 1)
        for channel, value in enumerate(expected):
            assert torch.allclose(probabilities[:, channel], torch.full_like(probabilities[:, channel], value),
                                  atol=0.15 * value)


def test_default_initialisation_starts_near_one_half() -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        probabilities = torch.softmax(small_net()(torch.randn(2, 1, *PATCH)), 1)[:, 1]
    assert 0.2 < probabilities.mean() < 0.8


@pytest.mark.parametrize(("num_classes", "prior", "message"), [
    (2, 0.0, r"foreground_prior must be None or in \(0, 1\), got 0.0"),
    (2, 1.0, r"foreground_prior must be None or in \(0, 1\), got 1.0"),
    (1, 0.01, r"num_classes >= 2, got 1"),
])
def test_bad_foreground_prior_is_refused(num_classes: int, prior: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FRADUNet(1, num_classes, PATCH, FEATURES, STRIDES, foreground_prior=prior)


def test_the_bfloat16_fixture_gives_finite_convolution_gradients(cpu_bfloat16) -> None:
    """The case oneDNN's bfloat16 weight gradient gets wrong now and then (see tests/conftest.py): with the
    fixture's native kernels every draw is finite."""
    conv = torch.nn.Conv3d(8, 16, 3, padding=1)
    for _ in range(100):
        x = torch.randn(1, 8, 2, 2, 4, requires_grad=True)
        conv.weight.grad = None
        with cpu_bfloat16():
            y = conv(x)
            y.backward(torch.randn_like(y))
        assert torch.isfinite(conv.weight.grad).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("foreground_prior", [None, 0.01])
def test_every_convolution_starts_as_nnunets_he_initialisation(foreground_prior) -> None:
    """nnU-Net's InitWeights_He(1e-2): Kaiming normal weights, zero biases, also for the transposed convolutions
    and (without a prior) the output heads, which PyTorch would start with uniform weights and biases."""
    torch.manual_seed(0)
    net = FRADUNet(1, 2, (16, 32, 32), (16, 32, 32, 32, 32), recalibration=None, foreground_prior=foreground_prior)
    transposed = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert len(transposed) == 4
    heads = list(net.decoder.seg_layers)
    he = [*transposed, *(heads if foreground_prior is None else []),
          *(conv for stage in [*net.encoder, *net.decoder.stages] for conv in stage.convs)]
    gain = (2 / (1 + 1e-2 ** 2)) ** 0.5
    for conv in he:
        assert torch.count_nonzero(conv.bias) == 0
        fan_in = conv.weight[0].numel() if not isinstance(conv, torch.nn.ConvTranspose3d) else \
            conv.weight.shape[1] * conv.weight[0, 0].numel()
        assert float(conv.weight.std()) == pytest.approx(gain / fan_in ** 0.5, rel=0.25)
    if foreground_prior is not None:  # the prior initialisation of the heads stays
        assert all(float(h.bias[1] - h.bias[0]) < -4 for h in heads)
