"""Attention maps and eq. 6 against references written here (loops, an explicit interpolation matrix)."""

from __future__ import annotations

import math

import pytest
import torch

from nnunet_airway.model import distillation as distillation_module
from nnunet_airway.model.distillation import attention_distillation_loss, attention_entropies, attention_map


def map_reference(a: torch.Tensor, p: float) -> torch.Tensor:
    total = torch.zeros(a.shape[0], 1, *a.shape[2:], dtype=torch.float64)
    for c in range(a.shape[1]):
        total[:, 0] += a[:, c].double().abs() ** p
    return total


def linear_upsampling_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D linear interpolation with half-pixel centres (align_corners=False)."""
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        x = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        left = min(int(math.floor(x)), n_in - 1)
        right = min(left + 1, n_in - 1)
        frac = x - left
        matrix[o, left] += 1 - frac
        matrix[o, right] += frac
    return matrix


def softmax_per_sample(g: torch.Tensor) -> torch.Tensor:
    flat = g.reshape(g.shape[0], -1)
    e = torch.exp(flat - flat.max(1, keepdim=True).values)
    return e / e.sum(1, keepdim=True)


def pair_reference(coarse: torch.Tensor, fine: torch.Tensor, p: float, reduction: str) -> torch.Tensor:
    g_c, g_f = map_reference(coarse, p)[:, 0], map_reference(fine, p)[:, 0]
    mats = [linear_upsampling_matrix(i, o) for i, o in zip(g_c.shape[1:], g_f.shape[1:], strict=True)]
    g_up = torch.einsum("ai,bj,ck,nijk->nabc", *mats, g_c)
    squared = (softmax_per_sample(g_up) - softmax_per_sample(g_f)) ** 2
    return squared.sum(1).mean() if reduction == "sum" else squared.mean()


@pytest.mark.parametrize("chunk_elements", [1 << 24, 24])  # all channels at once, or one channel at a time
@pytest.mark.parametrize("p", [1, 2, 3])
def test_attention_map_is_sum_of_powered_absolute_values(monkeypatch, p: float, chunk_elements: int) -> None:
    monkeypatch.setattr(distillation_module, "CHUNK_ELEMENTS", chunk_elements)
    a = torch.randn(2, 5, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    g = attention_map(a, p)
    assert g.shape == (2, 1, 2, 3, 4)
    torch.testing.assert_close(g, map_reference(a, p))
    weights = torch.randn_like(g)
    (got,) = torch.autograd.grad((g * weights).sum(), a)
    (want,) = torch.autograd.grad((map_reference(a, p) * weights).sum(), a)
    torch.testing.assert_close(got, want)


def test_attention_map_is_float32_and_finite_for_half_precision_features() -> None:
    a = torch.full((1, 300, 2, 2, 2), 200.0, dtype=torch.float16)  # sum of squares 1.2e7 > fp16 max
    g = attention_map(a)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, torch.full((1, 1, 2, 2, 2), 300 * 200.0**2))


def test_attention_map_rejects_p_below_one() -> None:
    with pytest.raises(ValueError, match="p >= 1"):
        attention_map(torch.zeros(1, 1, 1, 1, 1), p=0.5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_distillation_matches_eq6_over_three_scales(reduction: str) -> None:
    features = [torch.randn(2, c, *s, dtype=torch.float64) for c, s in [(6, (1, 2, 2)), (4, (2, 4, 3)), (3, (2, 8, 6))]]
    expected = pair_reference(features[0], features[1], 2, reduction) + pair_reference(features[1], features[2], 2,
                                                                                       reduction)
    torch.testing.assert_close(attention_distillation_loss(features, reduction=reduction).double(), expected)


def test_sum_reduction_is_mean_reduction_times_voxels() -> None:
    features = [torch.randn(3, 4, 2, 2, 2), torch.randn(3, 2, 4, 4, 4)]
    total = attention_distillation_loss(features, reduction="sum")
    mean = attention_distillation_loss(features, reduction="mean")
    torch.testing.assert_close(total, mean * 64)


def test_identical_maps_give_zero_loss() -> None:
    a = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    assert attention_distillation_loss([a, a.clone()]).item() == 0.0


def test_constant_coarse_map_upsampled_matches_constant_fine_map() -> None:
    coarse = torch.ones(1, 2, 2, 2, 2)
    fine = torch.ones(1, 8, 4, 4, 4) * 0.5  # a uniform map softmaxes to a uniform distribution
    assert attention_distillation_loss([coarse, fine]).item() == pytest.approx(0.0, abs=1e-12)


def test_teacher_gets_no_gradient_and_student_does() -> None:
    coarse = torch.randn(2, 3, 2, 2, 2, requires_grad=True)
    middle = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    fine = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
    attention_distillation_loss([coarse, middle, fine]).backward()
    assert fine.grad is None
    assert coarse.grad.abs().sum() > 0 and middle.grad.abs().sum() > 0
    middle.grad = None
    attention_distillation_loss([middle, fine]).backward()
    assert fine.grad is None and middle.grad.abs().sum() > 0


def test_softmax_runs_over_voxels_of_each_sample_separately() -> None:
    a = [torch.randn(1, 3, 2, 2, 2), torch.randn(1, 3, 4, 4, 4)]
    b = [torch.randn(1, 3, 2, 2, 2), torch.randn(1, 3, 4, 4, 4)]
    batched = attention_distillation_loss([torch.cat((x, y)) for x, y in zip(a, b, strict=True)])
    separate = (attention_distillation_loss(a) + attention_distillation_loss(b)) / 2
    torch.testing.assert_close(batched, separate)
    # a softmax over all voxels of the batch together would give a different value
    up = torch.nn.functional.interpolate(
        torch.cat([x[0] for x in (a, b)]).square().sum(1, keepdim=True), size=(4, 4, 4), mode="trilinear"
    )
    fine = torch.cat([x[1] for x in (a, b)]).square().sum(1)
    pooled = ((torch.softmax(up.flatten(), 0) - torch.softmax(fine.flatten(), 0)) ** 2).sum() / 2
    assert not torch.isclose(batched, pooled)


def test_loss_is_finite_float32_under_bfloat16_autocast_with_large_activations() -> None:
    features = [(1e3 * torch.randn(2, 64, 2, 3, 4)).requires_grad_(), (1e3 * torch.randn(2, 32, 4, 6, 8))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = attention_distillation_loss([f.to(torch.bfloat16) for f in features])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(features[0].grad).all()


def test_bad_arguments_raise() -> None:
    small, large = torch.zeros(1, 2, 2, 2, 2), torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"coarse to fine.*\(4, 4, 4\).*\(2, 2, 2\)"):
        attention_distillation_loss([large, small])
    with pytest.raises(ValueError, match="reduction"):
        attention_distillation_loss([small, large], reduction="max")
    with pytest.raises(ValueError, match="at least 2"):
        attention_distillation_loss([small])
    with pytest.raises(ValueError, match="N=1"):
        attention_distillation_loss([small, torch.zeros(2, 2, 4, 4, 4)])


def test_attention_entropy_is_normalised_by_the_voxel_count() -> None:
    uniform = torch.ones(2, 3, 2, 2, 2)
    # two voxels with G = ln 3 and 0: softmax (3/4, 1/4)
    two = torch.tensor([math.sqrt(math.log(3)), 0.0]).reshape(1, 1, 1, 1, 2)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    peaked = torch.zeros(1, 1, 2, 4, 4)
    peaked[0, 0, 0, 0, 0] = 10.0  # G = 100 at one voxel
    entropies = attention_entropies([uniform, two, peaked])
    assert entropies.dtype == torch.float32 and entropies.shape == (3,)
    assert entropies.tolist() == pytest.approx([1.0, expected, 0.0], abs=1e-5)
