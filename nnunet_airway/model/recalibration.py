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


Block = tuple[slice, slice]  # (samples, depth range)


def _blocks(shape: torch.Size) -> list[Block]:
    """Split (N, C, D, H, W) into blocks of at most CHUNK_VOXELS voxels (at least one depth plane each):
    several whole samples per block when a sample is small, else depth slabs of one sample."""
    n, depth, plane = shape[0], shape[2], shape[3] * shape[4]
    whole = slice(0, depth)
    if depth * plane <= CHUNK_VOXELS:
        per = max(1, CHUNK_VOXELS // max(depth * plane, 1))
        return [(slice(s, min(s + per, n)), whole) for s in range(0, n, per)]
    step = max(1, CHUNK_VOXELS // max(plane, 1))
    return [(slice(s, s + 1), slice(z, min(z + step, depth))) for s in range(n) for z in range(0, depth, step)]


def _block_projections(a: Tensor, d: Tensor, h: Tensor, w: Tensor,
                        over_height: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
    """Weighted sums of a block A (n, C, d, H, W) over one axis: over W (n, C, d, H), over H (n, C, d, W; None
    unless ``over_height``) and over depth with weights ``d`` (n, C, H, W), in A's dtype (weighted averages
    cannot overflow it)."""
    n, channels, depth, height, width = a.shape
    over_w = torch.matmul(a, w.to(a.dtype))
    # bmm with the weights as stride-0 row vectors: torch.matmul((1, K), (B, K, M)) copies a transposed A first
    over_h = None
    if over_height:
        rows = a.reshape(-1, height, width)
        over_h = torch.bmm(h.to(a.dtype).view(1, 1, height).expand(rows.shape[0], 1, height), rows)
        over_h = over_h.view(n, channels, depth, width)
    planes = a.reshape(n * channels, depth, height * width)
    over_d = torch.bmm(d.to(a.dtype).view(1, 1, depth).expand(planes.shape[0], 1, depth), planes)
    return over_w, over_h, over_d.view(n, channels, height, width)


def _activate_into(source: Tensor, negative_slope: float | None, target: Tensor) -> Tensor:
    """target = act(source) without a temporary; returns target (or source itself when there is no activation)."""
    if negative_slope is None:
        return source
    if negative_slope == 0:
        return torch.clamp(source, min=0, out=target)
    return F.leaky_relu_(target.copy_(source), negative_slope)


class _Scratch:
    """A reusable flat buffer for (samples, rows, voxels) temporaries of the largest block."""

    def __init__(self, like: Tensor, blocks: list[Block], rows: int, dtype: torch.dtype) -> None:
        plane = like.shape[3] * like.shape[4]
        largest = max((b.stop - b.start) * (z.stop - z.start) * plane for b, z in blocks)
        self.buffer = like.new_empty(rows * largest, dtype=dtype)

    def take(self, samples: int, rows: int, voxels: int) -> Tensor:
        return self.buffer[: samples * rows * voxels].view(samples, rows, voxels)


class _Gate:
    """Recomputes hidden = relu(K1 Z + b1) and gate = sigmoid(K2 hidden + b2) block by block from the small K1
    terms a_d (N, C/r, D) (which carries b1), a_h (N, C/r, H), a_w (N, C/r, W), into reused buffers."""

    def __init__(self, like: Tensor, blocks: list[Block], a_d: Tensor, a_h: Tensor, a_w: Tensor, k2: Tensor,
                 b2: Tensor) -> None:
        self.a_d, self.a_h, self.a_w, self.k2, self.b2 = a_d, a_h, a_w, k2, b2
        self.hidden_scratch = _Scratch(like, blocks, a_d.shape[1], a_d.dtype)
        self.gate_scratch = _Scratch(like, blocks, k2.shape[0], a_d.dtype)

    def hidden(self, samples: slice, depths: slice) -> Tensor:
        """(n, C/r, voxels of the block)."""
        a_d = self.a_d[samples, :, depths, None, None]
        n, c_r, depth = a_d.shape[:3]
        height, width = self.a_h.shape[2], self.a_w.shape[2]
        flat = self.hidden_scratch.take(n, c_r, depth * height * width)
        block = flat.view(n, c_r, depth, height, width)
        shape = block.shape
        torch.add(a_d.expand(shape), self.a_h[samples, :, None, :, None].expand(shape), out=block)
        block.add_(self.a_w[samples, :, None, None, :]).relu_()
        return flat

    def gate(self, hidden: Tensor) -> Tensor:
        """(n, C, voxels of the block)."""
        n, c = hidden.shape[0], self.k2.shape[0]
        flat = self.gate_scratch.take(n, c, hidden.shape[2])
        # the bias enters as baddbmm's (broadcast) input: one pass over the gate less than matmul + add_
        k2 = self.k2.expand(n, *self.k2.shape)
        return torch.baddbmm(self.b2[None, :, None], k2, hidden, out=flat).sigmoid_()


def _recalibrate(y: Tensor, d: Tensor, h: Tensor, w: Tensor, k1: Tensor, b1: Tensor, k2: Tensor, b2: Tensor,
                 negative_slope: float | None, for_backward: bool) -> tuple[Tensor, tuple | None]:
    """act(y) * gate (see _SpatialRecalibrationFunction) and, when ``for_backward``, the tensors its backward needs
    (without: no height projection, which only the backward uses)."""
    n, c, depth, height, width = y.shape
    dt = _compute_dtype(y.dtype)
    blocks = _blocks(y.shape)
    out = torch.empty_like(y, memory_format=torch.contiguous_format)
    # pass 1: A = act(y), written into `out` as scratch, and its projections P_w, P_h (for backward only), P_d
    if len(blocks) == 1:
        a = _activate_into(y, negative_slope, out)
        p_w, p_h, p_d = (p if p is None else p.to(dt) for p in _block_projections(a, d, h, w, for_backward))
    else:
        p_w = y.new_empty((n, c, depth, height), dtype=dt)
        p_h = y.new_empty((n, c, depth, width), dtype=dt) if for_backward else None
        p_d = y.new_zeros((n, c, height, width), dtype=dt)
        for samples, depths in blocks:
            a = _activate_into(y[samples, :, depths], negative_slope, out[samples, :, depths])
            over_w, over_h, over_d = _block_projections(a, d[depths], h, w, for_backward)
            p_w[samples, :, depths] = over_w
            if p_h is not None:
                p_h[samples, :, depths] = over_h
            p_d[samples] += over_d
    d_, h_, w_, k1_, b1_, k2_, b2_ = (t.to(dt) for t in (d, h, w, k1, b1, k2, b2))
    z_d = torch.matmul(p_w, h_)  # (N, C, D)
    z_h = torch.matmul(d_, p_w)  # (N, C, H)
    z_w = torch.matmul(h_, p_d)  # (N, C, W)
    a_d = torch.matmul(k1_, z_d).add_(b1_[:, None])  # (N, C/r, D), carries b1
    a_h = torch.matmul(k1_, z_h)
    a_w = torch.matmul(k1_, z_w)
    # pass 2: out = A * gate
    gates = _Gate(y, blocks, a_d, a_h, a_w, k2_, b2_)
    for samples, depths in blocks:
        target = out[samples, :, depths]
        a = target if negative_slope is not None else y[samples, :, depths]
        gate = gates.gate(gates.hidden(samples, depths))
        torch.mul(a, gate.view(target.shape), out=target)
    if not for_backward:
        return out, None
    return out, (out, p_w, p_h, p_d, z_d, z_h, z_w, a_d, a_h, a_w, d_, h_, w_, k1_, k2_, b2_)


class _SpatialRecalibrationFunction(torch.autograd.Function):
    """out = act(y) * sigmoid(K2 relu(K1 Z + b1) + b2), storing only `out` and small tensors for backward.

    Inputs: y (N, C, D, H, W); axis weights d (D,), h (H,), w (W,); K1 (C/r, C); b1 (C/r,); K2 (C, C/r);
    b2 (C,); negative_slope (None, 0 or the leaky slope of the activation fused in front).
    Backward needs neither y nor act(y): d out / d gate = act(y) is rebuilt as out / gate, i.e. d out / d(K2 h)
    = out * (1 - gate); the activation's derivative comes from the sign of out (the gate is positive); the
    axis-weight gradients come from the three small projections. Full-size temporaries exist only for one
    block (at most CHUNK_VOXELS voxels) at a time, in reused buffers.
    """

    @staticmethod
    def forward(ctx, y, d, h, w, k1, b1, k2, b2, negative_slope):  # type: ignore[override]
        out, saved = _recalibrate(y, d, h, w, k1, b1, k2, b2, negative_slope, for_backward=True)
        ctx.negative_slope = negative_slope
        ctx.input_dtypes = [t.dtype for t in (y, d, h, w, k1, b1, k2, b2)]
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        out, p_w, p_h, p_d, z_d, z_h, z_w, a_d, a_h, a_w, d, h, w, k1, k2, b2 = ctx.saved_tensors
        c, c_r = out.shape[1], k1.shape[0]
        blocks = _blocks(out.shape)
        grad_y = torch.empty_like(out)
        g_k2, g_b2 = torch.zeros_like(k2), torch.zeros_like(b2)
        g_a_d, g_a_h, g_a_w = torch.zeros_like(a_d), torch.zeros_like(a_h), torch.zeros_like(a_w)
        gates = _Gate(out, blocks, a_d, a_h, a_w, k2, b2)
        g_hidden_scratch = _Scratch(out, blocks, c_r, a_d.dtype)
        minus_k2_t = -k2.T
        # pass 1, through the gate; grad_y holds grad_out * gate for now
        for samples, depths in blocks:
            hidden = gates.hidden(samples, depths)
            gate = gates.gate(hidden)
            n, voxels = gate.shape[0], gate.shape[2]
            go = grad_out[samples, :, depths].reshape(n, c, voxels)
            torch.mul(go, gate, out=grad_y[samples, :, depths].view(n, c, voxels))
            # minus the gradient at K2's output, -(1 - gate) * out * grad_out; the sign goes into the small terms
            neg_g_z = gate.sub_(1).mul_(out[samples, :, depths].view(n, c, voxels)).mul_(go)
            g_k2 -= torch.matmul(neg_g_z, hidden.transpose(1, 2)).sum(0)
            g_b2 -= neg_g_z.sum((0, 2))
            g_hidden = torch.matmul(minus_k2_t, neg_g_z, out=g_hidden_scratch.take(n, c_r, voxels))
            g_hidden = g_hidden.mul_(hidden.sign_()).view(n, c_r, -1, *out.shape[3:])  # relu'
            over_w = g_hidden.sum(4)  # (n, C/r, depth, H)
            g_a_d[samples, :, depths] = over_w.sum(3)
            g_a_h[samples] += over_w.sum(2)
            g_a_w[samples] += g_hidden.sum((2, 3))
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
        # pass 2: add the projections' share h_j w_k g_z_d + d_i w_k g_z_h + d_i h_j g_z_w, then act'
        plane = g_z_d[..., :, None] * h + g_z_h[..., None, :] * d[:, None]  # (N, C, D, H)
        dh = d[:, None] * h  # (D, H)
        slope = ctx.negative_slope
        for samples, depths in blocks:
            gy = grad_y[samples, :, depths]
            gy.addcmul_(plane[samples, :, depths, :, None], w)
            gy.addcmul_(dh[depths, :, None], g_z_w[samples, :, None, None, :])
            if slope is not None:
                positive = out[samples, :, depths] > 0
                if slope == 0:
                    gy.mul_(positive)
                else:
                    gy.copy_(torch.where(positive, gy, gy * slope))
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
            tensors = (x, d, h, w, k1, b1, k2, b2)
            if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
                return _SpatialRecalibrationFunction.apply(*tensors, negative_slope)
            return _recalibrate(*tensors, negative_slope, for_backward=False)[0]  # inference: nothing kept
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
