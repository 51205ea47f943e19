"""FR (eq. 1-5), Project & Excite and cSE against formulas written out here with einsum and loops."""

from __future__ import annotations

import pytest
import torch

from nnunet_airway.model import recalibration as recalibration_module
from nnunet_airway.model.recalibration import ChannelSE, FeatureRecalibration, ProjectExcite

SHAPE = (2, 4, 3, 4, 5)  # N, C, D, H, W: every axis a different length


def excite(z: torch.Tensor, module) -> torch.Tensor:
    """sigmoid(K2 relu(K1 z + b1) + b2) over the channel axis of z (N, C, ...), written with einsum."""
    k1 = module.squeeze.weight.flatten(1)
    k2 = module.excite.weight.flatten(1)
    extra = (None,) * (z.dim() - 2)
    hidden = torch.relu(torch.einsum("rc,nc...->nr...", k1, z) + module.squeeze.bias[(slice(None), *extra)])
    return torch.sigmoid(torch.einsum("cr,nr...->nc...", k2, hidden) + module.excite.bias[(slice(None), *extra)])


def fr_reference(a: torch.Tensor, fr: FeatureRecalibration) -> torch.Tensor:
    """Eq. 1-5 with explicit loops over the spatial weights (the released code's nested biases if present)."""
    d, h, w = fr.depth_weights, fr.height_weights, fr.width_weights
    n, c, depth, height, width = a.shape
    z_d = torch.zeros(n, c, depth, dtype=a.dtype)
    z_h = torch.zeros(n, c, height, dtype=a.dtype)
    z_w = torch.zeros(n, c, width, dtype=a.dtype)
    for i in range(depth):
        for j in range(height):
            for k in range(width):
                z_d[:, :, i] = z_d[:, :, i] + h[j] * w[k] * a[:, :, i, j, k]
                z_h[:, :, j] = z_h[:, :, j] + d[i] * w[k] * a[:, :, i, j, k]
                z_w[:, :, k] = z_w[:, :, k] + d[i] * h[j] * a[:, :, i, j, k]
    if fr.axis_bias is not None:
        b_d, b_h, b_w = fr.axis_bias
        z_d = z_d + b_h * w.sum() + b_w  # sum_k w_k (sum_j h_j A + b_h) + b_w
        z_h = z_h + b_d * w.sum() + b_w  # sum_k w_k (sum_i d_i A + b_d) + b_w
        z_w = z_w + b_d * h.sum() + b_h  # sum_j h_j (sum_i d_i A + b_d) + b_h
    z = z_d[:, :, :, None, None] + z_h[:, :, None, :, None] + z_w[:, :, None, None, :]
    return a * excite(z, fr)


def make_fr(randomise, bias: bool = False, memory_efficient: bool = True) -> FeatureRecalibration:
    fr = FeatureRecalibration(SHAPE[1], SHAPE[2:], bias=bias, memory_efficient=memory_efficient).double()
    return randomise(fr)


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("bias", [False, True])
def test_fr_output_and_gradients_match_the_equations(randomise, bias: bool, memory_efficient: bool) -> None:
    fr = make_fr(randomise, bias, memory_efficient)
    a = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(SHAPE, dtype=torch.float64)
    params = [a, fr.depth_weights, fr.height_weights, fr.width_weights, *fr.squeeze.parameters(),
              *fr.excite.parameters(), *([fr.axis_bias] if bias else [])]
    expected = fr_reference(a, fr)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), params)
    out = fr(a)
    grads = torch.autograd.grad((out * upstream).sum(), params)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert grads[1].abs().sum() > 0 and grads[2].abs().sum() > 0 and grads[3].abs().sum() > 0


def test_untrained_fr_equals_project_and_excite() -> None:
    fr = FeatureRecalibration(4, SHAPE[2:]).double()
    pe = ProjectExcite(4).double()
    pe.load_state_dict({k: v for k, v in fr.state_dict().items() if k.startswith(("squeeze", "excite"))})
    a = torch.randn(SHAPE, dtype=torch.float64)
    # the weights were created as float32 1/N, hence float32 agreement
    torch.testing.assert_close(fr(a), pe(a), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fr.depth_weights, torch.full((3,), 1 / 3, dtype=torch.float64), rtol=1e-7, atol=0)


def test_project_excite_uses_axis_averages(randomise) -> None:
    pe = randomise(ProjectExcite(4).double())
    a = torch.randn(SHAPE, dtype=torch.float64)
    z = a.mean((3, 4), keepdim=True) + a.mean((2, 4), keepdim=True) + a.mean((2, 3), keepdim=True)
    torch.testing.assert_close(pe(a), a * excite(z, pe), rtol=1e-12, atol=1e-12)


def test_channel_se_uses_one_gate_per_channel(randomise) -> None:
    cse = randomise(ChannelSE(4).double())
    a = torch.randn(SHAPE, dtype=torch.float64)
    z = torch.stack([torch.stack([a[n, c].sum() / a[n, c].numel() for c in range(4)]) for n in range(2)])
    gate = excite(z, cse)
    torch.testing.assert_close(cse(a), a * gate[:, :, None, None, None], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("negative_slope", [0.0, 0.01])
@pytest.mark.parametrize("kind", ["fr", "pe", "cse"])
def test_fused_activation_equals_activation_then_block(randomise, kind: str, negative_slope: float) -> None:
    block = {"fr": lambda: FeatureRecalibration(4, SHAPE[2:]), "pe": lambda: ProjectExcite(4),
             "cse": lambda: ChannelSE(4)}[kind]()
    block = randomise(block.double())
    y = torch.randn(SHAPE, dtype=torch.float64, requires_grad=True)
    fused = block.recalibrate(y, negative_slope)
    separate = block(torch.nn.functional.leaky_relu(y, negative_slope))
    torch.testing.assert_close(fused, separate, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(SHAPE, dtype=torch.float64)
    (g_fused,) = torch.autograd.grad((fused * upstream).sum(), y)
    (g_separate,) = torch.autograd.grad((separate * upstream).sum(), y)
    torch.testing.assert_close(g_fused, g_separate, rtol=1e-10, atol=1e-12)


# shape (N, 4, 2, 2, 3); CHUNK_VOXELS 6: one depth plane of one sample per block; 24: two whole samples per block
@pytest.mark.slow
@pytest.mark.parametrize(("negative_slope", "n", "chunk_voxels"), [(None, 2, 6), (0.0, 2, 6), (0.01, 2, 6), (0.0, 3, 24)])
def test_recomputing_function_passes_gradcheck_over_several_blocks(randomise, monkeypatch, negative_slope, n,
                                                                    chunk_voxels) -> None:
    monkeypatch.setattr(recalibration_module, "CHUNK_VOXELS", chunk_voxels)
    shape = (n, 4, 2, 2, 3)
    fr = randomise(FeatureRecalibration(4, shape[2:], bias=True).double())
    y = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, *params: fr.recalibrate(y, negative_slope), (y, *fr.parameters()))


@pytest.mark.parametrize("kind", ["fr", "pe"])
def test_recomputing_function_matches_direct_implementation_in_float32(randomise, monkeypatch, kind) -> None:
    monkeypatch.setattr(recalibration_module, "CHUNK_VOXELS", 2 * 6 * 7)
    shape = (2, 8, 5, 6, 7)
    block = FeatureRecalibration(8, shape[2:]) if kind == "fr" else ProjectExcite(8)
    randomise(block, 0.2)
    y = torch.randn(shape, requires_grad=True)
    upstream = torch.randn(shape)
    results = []
    for memory_efficient in (True, False):
        block.memory_efficient = memory_efficient
        out = block.recalibrate(y, 0.0)
        grads = torch.autograd.grad((out * upstream).sum(), [y, *block.parameters()])
        results.append((out, grads))
    (out, grads), (direct, direct_grads) = results
    torch.testing.assert_close(out, direct, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, direct_grads, strict=True):
        assert (got - want).norm() <= 1e-5 * want.norm() + 1e-7


def test_recomputing_function_stores_no_full_size_temporaries(randomise) -> None:
    """Besides its output, FR keeps only tensors the size of a 2-D projection for backward."""
    shape = (1, 8, 6, 7, 9)
    fr = randomise(FeatureRecalibration(8, shape[2:]))
    y = torch.randn(shape, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fr.recalibrate(y, 0.0)
    full = [t for t in saved if t.numel() >= out.numel()]
    assert len(full) == 1 and full[0] is out or full[0].data_ptr() == out.data_ptr()
    assert sum(t.numel() for t in saved if t.numel() < out.numel()) < out.numel()


@pytest.mark.parametrize("kind", ["fr", "pe", "cse"])
def test_no_nan_or_inf_under_bfloat16_autocast_with_large_activations(kind: str) -> None:
    shape = (2, 16, 4, 6, 8)
    block = {"fr": lambda: FeatureRecalibration(16, shape[2:]), "pe": lambda: ProjectExcite(16),
             "cse": lambda: ChannelSE(16)}[kind]()
    y = (3e4 * torch.randn(shape)).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block.recalibrate(y.to(torch.bfloat16), 0.0)
    out.float().square().mean().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert torch.isfinite(y.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters())


def test_fr_rejects_a_different_spatial_size_naming_both() -> None:
    fr = FeatureRecalibration(4, (3, 4, 5))
    with pytest.raises(ValueError, match=r"\(3, 4, 5\).*\(3, 4, 6\)"):
        fr(torch.zeros(1, 4, 3, 4, 6))


@pytest.mark.parametrize("make", [lambda: FeatureRecalibration(4, 3), lambda: ProjectExcite(4), lambda: ChannelSE(4)])
def test_blocks_reject_a_wrong_channel_count(make) -> None:
    with pytest.raises(ValueError, match=r"\(N, 4, D, H, W\).*\(1, 5, 3, 3, 3\)"):
        make()(torch.zeros(1, 5, 3, 3, 3))


def test_bad_construction_arguments_raise() -> None:
    with pytest.raises(ValueError, match="reduction"):
        ChannelSE(2, reduction=4)
    with pytest.raises(ValueError, match="spatial_size"):
        FeatureRecalibration(4, (3, 4))
