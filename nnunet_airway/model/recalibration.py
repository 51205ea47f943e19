"""Channel recalibration blocks: Feature Recalibration (Qin et al. 2020, eq. 1-5), Project & Excite and cSE.

All three map a feature map A of shape (N, C, D, H, W) to U * A, where the gate U in (0, 1) comes from an
excitation ``sigmoid(K2 * relu(K1 * Z))`` with 1x1x1 kernels K1 (C -> C/r) and K2 (C/r -> C):

- FR: Z = B(Z_depth) + B(Z_height) + B(Z_width), Z_depth[c, i] = sum_j h_j sum_k w_k A[c, i, j, k] (eq. 2),
  likewise for height and width, with learnable 1-D weights d, h, w; the gate varies in space.
- PE: the same with plain averages (d_i = 1/D, h_j = 1/H, w_k = 1/W).
- cSE: Z = global average over D, H, W; one gate per channel.

FR and PE share :func:`spatial_recalibration`: since K1 is linear it is applied to the three small axis
projections before they are broadcast, and the full-size hidden and gate tensors are recomputed in the
backward pass instead of being stored (:class:`_SpatialRecalibrationFunction`). Every block can fuse the
(leaky) ReLU that precedes it (:meth:`recalibrate`), so that a network stores one tensor per block, the
output, instead of both the activation and the output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Full-size temporaries of the fused path are built on slabs of at most this many voxels, so that their
# memory stays small next to the activations whatever the patch size.
CHUNK_VOXELS = 1 << 20


def _check_channels(channels: int, reduction: int) -> None:
    if channels < 1 or reduction < 1:
        raise ValueError(f"channels and reduction must be positive, got channels={channels}, reduction={reduction}")
    if channels // reduction < 1:
        raise ValueError(f"channels // reduction must be at least 1, got channels={channels}, reduction={reduction}")


def _check_5d(x: Tensor, channels: int, name: str) -> None:
    if x.dim() != 5 or x.shape[1] != channels:
        raise ValueError(f"{name} expects input of shape (N, {channels}, D, H, W), got {tuple(x.shape)}")


def _activate(x: Tensor, negative_slope: float | None) -> Tensor:
    """Identity for ``None``, ReLU for 0, leaky ReLU otherwise."""
    if negative_slope is None:
        return x
    if negative_slope == 0:
        return F.relu(x)
    return F.leaky_relu(x, negative_slope)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Gate arithmetic runs in float32 (float64 stays float64): fp16 would overflow on large activations."""
    return torch.promote_types(dtype, torch.float32)


def _depth_slabs(shape: torch.Size) -> list[tuple[int, int]]:
    """Depth ranges of one sample whose voxel count stays below CHUNK_VOXELS (at least one plane each)."""
    depth, plane = shape[2], shape[3] * shape[4]
    step = max(1, CHUNK_VOXELS // max(plane, 1))
    return [(start, min(start + step, depth)) for start in range(0, depth, step)]


def _axis_projections(a: Tensor, d: Tensor, h: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Weighted sums of A (N, C, D, H, W) over one axis: P_w (N,C,D,H), P_h (N,C,D,W), P_d (N,C,H,W).

    Computed in A's dtype (weighted averages cannot overflow it), returned in the gate's compute dtype.
    """
    n, c, depth, height, width = a.shape
    dt = _compute_dtype(a.dtype)
    p_w = torch.matmul(a, w.to(a.dtype))  # (N, C, D, H)
    p_h = torch.matmul(h.to(a.dtype).view(1, height), a.reshape(n * c * depth, height, width))
    p_d = torch.matmul(d.to(a.dtype).view(1, depth), a.reshape(n * c, depth, height * width))
    return (
        p_w.to(dt),
        p_h.view(n, c, depth, width).to(dt),
        p_d.view(n, c, height, width).to(dt),
    )


def _hidden(a_d: Tensor, a_h: Tensor, a_w: Tensor, sample: int, start: int, stop: int) -> Tensor:
    """relu(K1 * Z) on a depth slab of one sample, (C/r, stop-start, H, W), from the small K1 projections."""
    pre = a_d[sample, :, start:stop, None, None] + a_h[sample, :, None, :, None] + a_w[sample, :, None, None, :]
    return pre.relu_()


def _gate(hidden: Tensor, k2: Tensor, b2: Tensor) -> Tensor:
    """sigmoid(K2 * hidden + b2) as (C, voxels)."""
    return torch.addmm(b2[:, None], k2, hidden.reshape(hidden.shape[0], -1)).sigmoid_()


class _SpatialRecalibrationFunction(torch.autograd.Function):
    """out = act(y) * sigmoid(K2 relu(K1 Z + b1) + b2), storing only `out` and small tensors for backward.

    Inputs: y (N, C, D, H, W); axis weights d (D,), h (H,), w (W,); K1 (C/r, C); b1 (C/r,); K2 (C, C/r);
    b2 (C,); negative_slope (None, 0 or the leaky slope of the activation fused in front).
    Backward needs neither y nor act(y): d out / d gate = act(y) * gate' is rebuilt from out, the activation's
    derivative from the sign of out (the gate is positive), and the axis-weight gradients from the three
    small projections.
    """

    @staticmethod
    def forward(ctx, y, d, h, w, k1, b1, k2, b2, negative_slope):  # type: ignore[override]
        a = _activate(y, negative_slope)
        p_w, p_h, p_d = _axis_projections(a, d, h, w)
        dt = p_w.dtype
        d32, h32, w32 = d.to(dt), h.to(dt), w.to(dt)
        z_d = torch.matmul(p_w, h32)  # (N, C, D)
        z_h = torch.matmul(d32, p_w)  # (N, C, H)
        z_w = torch.matmul(d32, p_h)  # (N, C, W)
        k1_, k2_, b2_ = k1.to(dt), k2.to(dt), b2.to(dt)
        a_d = torch.matmul(k1_, z_d) + b1.to(dt)[:, None]  # (N, C/r, D), carries b1
        a_h = torch.matmul(k1_, z_h)
        a_w = torch.matmul(k1_, z_w)
        out = torch.empty_like(a)
        for n in range(a.shape[0]):
            for start, stop in _depth_slabs(a.shape):
                gate = _gate(_hidden(a_d, a_h, a_w, n, start, stop), k2_, b2_)
                slab = a[n, :, start:stop]
                out[n, :, start:stop] = (slab.to(dt) * gate.view(slab.shape)).to(out.dtype)
        ctx.negative_slope = negative_slope
        ctx.input_dtypes = [t.dtype for t in (y, d, h, w, k1, b1, k2, b2)]
        ctx.save_for_backward(out, p_w, p_h, p_d, z_d, z_h, z_w, a_d, a_h, a_w, d32, h32, w32, k1_, k2_, b2_)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        out, p_w, p_h, p_d, z_d, z_h, z_w, a_d, a_h, a_w, d, h, w, k1, k2, b2 = ctx.saved_tensors
        dt = p_w.dtype
        grad_y = torch.empty_like(out)
        g_k2 = torch.zeros_like(k2)
        g_b2 = torch.zeros_like(b2)
        g_a_d = torch.zeros_like(a_d)
        g_a_h = torch.zeros_like(a_h)
        g_a_w = torch.zeros_like(a_w)
        # pass 1: through the gate; grad_y temporarily holds grad_out * gate
        for n in range(out.shape[0]):
            for start, stop in _depth_slabs(out.shape):
                hidden = _hidden(a_d, a_h, a_w, n, start, stop)
                flat_hidden = hidden.reshape(hidden.shape[0], -1)
                gate = _gate(hidden, k2, b2)
                go = grad_out[n, :, start:stop].reshape(gate.shape).to(dt)
                o = out[n, :, start:stop].reshape(gate.shape).to(dt)
                grad_y[n, :, start:stop] = (go * gate).view(out[n, :, start:stop].shape).to(grad_y.dtype)
                g_z = go * o * (1 - gate)  # d out / d pre-sigmoid = act(y) * gate * (1 - gate)
                g_k2 += g_z @ flat_hidden.T
                g_b2 += g_z.sum(1)
                g_hidden = (k2.T @ g_z).mul_(flat_hidden > 0).view(hidden.shape)
                g_a_d[n, :, start:stop] = g_hidden.sum((2, 3))
                g_a_h[n] += g_hidden.sum((1, 3))
                g_a_w[n] += g_hidden.sum((1, 2))
        # the small K1 stage
        g_z_d = torch.matmul(k1.T, g_a_d)  # (N, C, D)
        g_z_h = torch.matmul(k1.T, g_a_h)
        g_z_w = torch.matmul(k1.T, g_a_w)
        g_k1 = (
            torch.einsum("nrd,ncd->rc", g_a_d, z_d)
            + torch.einsum("nrh,nch->rc", g_a_h, z_h)
            + torch.einsum("nrw,ncw->rc", g_a_w, z_w)
        )
        g_b1 = g_a_d.sum((0, 2))
        # pass 2: add the projections' share, d act(y) * (h_j w_k g_z_d + d_i w_k g_z_h + d_i h_j g_z_w)
        plane = g_z_d[..., :, None] * h + g_z_h[..., None, :] * d[:, None]  # (N, C, D, H)
        dh = d[:, None] * h  # (D, H)
        slope = ctx.negative_slope
        for n in range(out.shape[0]):
            for start, stop in _depth_slabs(out.shape):
                total = (
                    grad_y[n, :, start:stop].to(dt)
                    + plane[n, :, start:stop, :, None] * w
                    + dh[start:stop, :, None] * g_z_w[n, :, None, None, :]
                )
                if slope is not None:
                    positive = out[n, :, start:stop] > 0
                    total = total * positive if slope == 0 else torch.where(positive, total, total * slope)
                grad_y[n, :, start:stop] = total.to(grad_y.dtype)
        g_d = torch.einsum("nch,ncdh->d", g_z_h, p_w) + torch.einsum("ncw,ncdw->d", g_z_w, p_h)
        g_h = torch.einsum("ncd,ncdh->h", g_z_d, p_w) + torch.einsum("ncw,nchw->h", g_z_w, p_d)
        g_w = torch.einsum("ncd,ncdw->w", g_z_d, p_h) + torch.einsum("nch,nchw->w", g_z_h, p_d)
        grads = (grad_y, g_d, g_h, g_w, g_k1, g_b1, g_k2, g_b2)
        needs, dtypes = ctx.needs_input_grad, ctx.input_dtypes
        return (*(g.to(dt_) if need else None for g, need, dt_ in zip(grads, needs, dtypes, strict=False)), None)


def _direct_spatial_recalibration(
    a: Tensor, d: Tensor, h: Tensor, w: Tensor, k1: Tensor, b1: Tensor, k2: Tensor, b2: Tensor
) -> Tensor:
    """The direct form of eq. 1-5 (full-size Z, hidden and gate kept by autograd); reference and benchmark."""
    z_d = torch.einsum("ncdhw,h,w->ncd", a, h, w)
    z_h = torch.einsum("ncdhw,d,w->nch", a, d, w)
    z_w = torch.einsum("ncdhw,d,h->ncw", a, d, h)
    z = z_d[..., :, None, None] + z_h[..., None, :, None] + z_w[..., None, None, :]
    hidden = F.relu(F.conv3d(z, k1[..., None, None, None], b1))
    return a * torch.sigmoid(F.conv3d(hidden, k2[..., None, None, None], b2))


def spatial_recalibration(
    x: Tensor,
    axis_weights: tuple[Tensor, Tensor, Tensor],
    k1: Tensor,
    b1: Tensor,
    k2: Tensor,
    b2: Tensor,
    negative_slope: float | None = None,
    memory_efficient: bool = True,
) -> Tensor:
    """act(x) * sigmoid(K2 relu(K1 Z + b1) + b2), Z the broadcast sum of the weighted axis projections of act(x).

    x: (N, C, D, H, W); axis_weights: (d (D,), h (H,), w (W,)); K1: (C/r, C); K2: (C, C/r).
    ``negative_slope``: activation applied to x first (None: none, 0: ReLU, > 0: leaky ReLU).
    The gate is computed in float32 (autocast is switched off here); the result has x's dtype.
    ``memory_efficient=False`` runs the direct implementation (same values, full-size tensors kept).
    """
    d, h, w = axis_weights
    with torch.autocast(x.device.type, enabled=False):
        if memory_efficient:
            return _SpatialRecalibrationFunction.apply(x, d, h, w, k1, b1, k2, b2, negative_slope)
        a = _activate(x, negative_slope)
        dt = _compute_dtype(a.dtype)
        out = _direct_spatial_recalibration(a.to(dt), *(t.to(dt) for t in (d, h, w, k1, b1, k2, b2)))
        return out.to(a.dtype)


class _Excitation(nn.Module):
    """Shared parts: the squeeze (K1: C -> C/r) and excite (K2: C/r -> C) 1x1x1 convolutions."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        _check_channels(channels, reduction)
        self.channels = channels
        self.reduction = reduction
        self.squeeze = nn.Conv3d(channels, channels // reduction, 1)
        self.excite = nn.Conv3d(channels // reduction, channels, 1)

    def _kernels(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """K1 (C/r, C), b1 (C/r,), K2 (C, C/r), b2 (C,)."""
        c, c_r = self.channels, self.channels // self.reduction
        return self.squeeze.weight.view(c_r, c), self.squeeze.bias, self.excite.weight.view(c, c_r), self.excite.bias

    def forward(self, x: Tensor) -> Tensor:
        """U * x for x of shape (N, C, D, H, W)."""
        return self.recalibrate(x)

    def recalibrate(self, x: Tensor, negative_slope: float | None = None) -> Tensor:
        """U * act(x), the activation fused in front: ``negative_slope`` None: none, 0: ReLU, > 0: leaky ReLU."""
        raise NotImplementedError


class FeatureRecalibration(_Excitation):
    """Feature Recalibration (Qin et al. 2020, eq. 1-5) for features of one fixed spatial size.

    Args:
        channels: C.
        spatial_size: (D, H, W) of the features (an int means a cube).
        reduction: r; the excitation's hidden width is C // r.
        bias: False (paper, eq. 2-4): plain weighted sums. True: each 1-D weighted sum over an axis gets a
            learnable scalar bias, as the released code's 1x1x1 Conv3d over the permuted axis does (depth
            projection = sum_k w_k (sum_j h_j A + b_h) + b_w; height: d then w; width: d then h).
        memory_efficient: True: the recomputing autograd Function; False: the direct implementation.

    Parameters ``depth_weights`` (D,), ``height_weights`` (H,), ``width_weights`` (W,) start at 1/D, 1/H and
    1/W (``axis_bias`` (3,) at 0), so an untrained FR equals Project & Excite, which averages each axis; the
    released code uses PyTorch's default Conv3d initialisation instead.
    """

    def __init__(
        self,
        channels: int,
        spatial_size: int | Sequence[int],
        reduction: int = 2,
        bias: bool = False,
        memory_efficient: bool = True,
    ) -> None:
        super().__init__(channels, reduction)
        size = (spatial_size,) * 3 if isinstance(spatial_size, int) else tuple(int(s) for s in spatial_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"spatial_size must be a positive int or (D, H, W), got {spatial_size!r}")
        self.spatial_size = size
        self.memory_efficient = memory_efficient
        self.depth_weights = nn.Parameter(torch.full((size[0],), 1.0 / size[0]))
        self.height_weights = nn.Parameter(torch.full((size[1],), 1.0 / size[1]))
        self.width_weights = nn.Parameter(torch.full((size[2],), 1.0 / size[2]))
        if bias:
            self.axis_bias = nn.Parameter(torch.zeros(3))  # (b_d, b_h, b_w)
        else:
            self.register_parameter("axis_bias", None)

    def recalibrate(self, x: Tensor, negative_slope: float | None = None) -> Tensor:
        _check_5d(x, self.channels, "FeatureRecalibration")
        if tuple(x.shape[2:]) != self.spatial_size:
            raise ValueError(
                f"FeatureRecalibration was built for spatial size {self.spatial_size}, "
                f"got input of spatial size {tuple(x.shape[2:])}"
            )
        d, h, w = self.depth_weights, self.height_weights, self.width_weights
        k1, b1, k2, b2 = self._kernels()
        if self.axis_bias is not None:
            b_d, b_h, b_w = self.axis_bias.unbind()
            # the biases add one constant to every entry of Z; K1 is linear, so fold it into K1's bias
            constant = (b_h * w.sum() + b_w) + (b_d * w.sum() + b_w) + (b_d * h.sum() + b_h)
            b1 = b1 + constant * k1.sum(1)
        return spatial_recalibration(x, (d, h, w), k1, b1, k2, b2, negative_slope, self.memory_efficient)


class ProjectExcite(_Excitation):
    """Project & Excite (Rickmann et al. 2019): FR with fixed averages along D, H and W; any spatial size."""

    def __init__(self, channels: int, reduction: int = 2, memory_efficient: bool = True) -> None:
        super().__init__(channels, reduction)
        self.memory_efficient = memory_efficient

    def recalibrate(self, x: Tensor, negative_slope: float | None = None) -> Tensor:
        _check_5d(x, self.channels, "ProjectExcite")
        dt = _compute_dtype(x.dtype)
        averages = tuple(torch.full((s,), 1.0 / s, dtype=dt, device=x.device) for s in x.shape[2:])
        return spatial_recalibration(x, averages, *self._kernels(), negative_slope, self.memory_efficient)


class ChannelSE(_Excitation):
    """Channel squeeze & excitation as in AnatomyNet (cSE): global average over D, H, W, one gate per channel."""

    def __init__(self, channels: int, reduction: int = 2) -> None:
        super().__init__(channels, reduction)

    def recalibrate(self, x: Tensor, negative_slope: float | None = None) -> Tensor:
        _check_5d(x, self.channels, "ChannelSE")
        a = _activate(x, negative_slope)
        dt = _compute_dtype(a.dtype)
        k1, b1, k2, b2 = (t.to(dt) for t in self._kernels())
        with torch.autocast(a.device.type, enabled=False):
            z = a.mean((2, 3, 4), dtype=dt)  # (N, C)
            gate = torch.sigmoid(F.linear(F.relu(F.linear(z, k1, b1)), k2, b2))
        return a * gate.to(a.dtype)[:, :, None, None, None]
