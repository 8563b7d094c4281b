"""Triton kernels for Derf and DyT: a one-pass forward, and a backward that fuses dx with the weight, bias,
alpha and shift reductions (per-program partial sums, finished by one small torch sum).

Both kernels see the input as a 2-D (R, K) array: channels-last input is (rows, C) with the channel on
the column axis; channels-first input (N, C, *spatial) is (N*C, H*W...) with the channel on the row
axis (row % C). alpha and shift are read from device memory, so nothing synchronises with the host.
Compute is float32 whatever the input dtype. On the CPU these kernels run only under Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests check them.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

# erf and tanh (the paper's Derf and DyT); the other table functions take the fused torch path.
TRITON_FUNCTIONS = {"derf": 0, "dyt": 1, "tanh": 1}


try:  # Triton is optional: without it this module still imports and supports() says no.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised on machines without triton
    triton = tl = None


def supports(x: Tensor, function: str) -> bool:
    if function not in TRITON_FUNCTIONS or triton is None:
        return False
    if x.is_cuda:
        return True
    return x.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:
    # Triton resolves helpers through module globals, so the kernels live at module level.

    @triton.jit
    def _tanh(u):
        # Same odd rational approximation as the CPU kernel (scripts/fit_fast_math.py): accurate near 0,
        # where 1 - 2 / (exp(2u) + 1) would cancel.
        x = tl.minimum(tl.maximum(u, -7.9), 7.9)
        t = x * x
        p = -1.192393488e-13
        p = p * t + 6.482640119e-11
        p = p * t - 2.252510001e-08
        p = p * t + 1.168943072e-05
        p = p * t + 3.153638914e-03
        p = p * t + 1.312812418e-01
        p = p * t + 1.0
        q = 2.619318839e-04
        q = q * t + 2.469185181e-02
        q = q * t + 4.646145701e-01
        q = q * t + 1.0
        return x * p / q

    @triton.jit
    def _value_and_grad(u, FUNCTION: tl.constexpr):
        if FUNCTION == 0:
            f = tl.math.erf(u)
            d = 1.1283791670955126 * tl.exp(-u * u)
        else:
            f = _tanh(u)
            # 4e / (1 + e)^2, e = exp(-2|u|), not 1 - f*f: _tanh is off by ~3e-7 near +-1 and stops at its clamp,
            # so 1 - f*f kept ~5.5e-7 of slope for any |u| and the alpha gradient sum(g * f'(u) * x) grew with |x|.
            # Zero where float32 tanh rounds to +-1 (|u| > atanh(1 - 2^-25)), as eager's 1 - tanh(u)^2 is.
            a = tl.abs(u)
            e = tl.exp(-2.0 * a)
            r = 1.0 / (1.0 + e)
            d = tl.where(a > 9.0109, 0.0, 4.0 * e * r * r)
        return f, d

    @triton.jit
    def forward_kernel(
        X,
        Y,
        W,
        B,
        ALPHA,
        SHIFT,
        N,
        C,
        INNER,
        FUNCTION: tl.constexpr,
        HAS_SHIFT: tl.constexpr,
        AFFINE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        u = x * tl.load(ALPHA).to(tl.float32)
        if HAS_SHIFT:
            u += tl.load(SHIFT).to(tl.float32)
        f, _ = _value_and_grad(u, FUNCTION)
        if AFFINE:
            c = (offs // INNER) % C
            f = f * tl.load(W + c, mask=mask, other=1.0).to(tl.float32) + tl.load(B + c, mask=mask, other=0.0).to(
                tl.float32
            )
        tl.store(Y + offs, f.to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def backward_kernel(
        X,
        G,
        DX,
        W,
        ALPHA,
        SHIFT,
        PART_W,
        PART_B,
        PART_A,
        PART_S,
        R,
        K,
        C,
        FUNCTION: tl.constexpr,
        HAS_SHIFT: tl.constexpr,
        AFFINE: tl.constexpr,
        CHANNEL_IS_COLUMN: tl.constexpr,
        BLOCK_R: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        pid_r = tl.program_id(0)
        pid_k = tl.program_id(1)
        rows = pid_r.to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = pid_k.to(tl.int64) * BLOCK_K + tl.arange(0, BLOCK_K)
        mask = (rows[:, None] < R) & (cols[None, :] < K)
        offs = rows[:, None] * K + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
        alpha = tl.load(ALPHA).to(tl.float32)
        u = x * alpha
        if HAS_SHIFT:
            u += tl.load(SHIFT).to(tl.float32)
        f, d = _value_and_grad(u, FUNCTION)
        gy = g
        if AFFINE:
            if CHANNEL_IS_COLUMN:
                w = tl.load(W + cols, mask=cols < K, other=0.0).to(tl.float32)[None, :]
            else:
                w = tl.load(W + rows % C, mask=rows < R, other=0.0).to(tl.float32)[:, None]
            gy = g * w
        gu = gy * d
        tl.store(DX + offs, (gu * alpha).to(DX.dtype.element_ty), mask=mask)
        part = pid_r * tl.num_programs(1) + pid_k
        tl.store(PART_A + part, tl.sum(tl.sum(gu * x, axis=1), axis=0))
        tl.store(PART_S + part, tl.sum(tl.sum(gu, axis=1), axis=0))
        if AFFINE:
            gf = g * f
            if CHANNEL_IS_COLUMN:  # column sums, one row of partials per row-program
                tl.store(PART_W + pid_r * K + cols, tl.sum(gf, axis=0), mask=cols < K)
                tl.store(PART_B + pid_r * K + cols, tl.sum(g, axis=0), mask=cols < K)
            else:  # row sums, one row of partials per column-program
                tl.store(PART_W + pid_k * R + rows, tl.sum(gf, axis=1), mask=rows < R)
                tl.store(PART_B + pid_k * R + rows, tl.sum(g, axis=1), mask=rows < R)


def _as_2d(x: Tensor, channels_first: bool) -> tuple[int, int, int]:
    """(R, K, inner): rows and columns of the 2-D view, and the spatial size for channels-first input."""
    if channels_first:
        inner = x[0, 0].numel() if x.dim() > 2 else 1
        return x.shape[0] * x.shape[1], inner, inner
    return x.numel() // x.shape[-1], x.shape[-1], 1


def _dummy(x: Tensor) -> Tensor:
    return x.new_empty(1, dtype=torch.float32)


def forward(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    function: str,
    channels_first: bool,
) -> Tensor:
    x = x.contiguous()
    y = torch.empty_like(x)
    n = x.numel()
    c = x.shape[1] if channels_first else x.shape[-1]
    inner = _as_2d(x, channels_first)[2]
    block = 1024
    forward_kernel[(triton.cdiv(n, block),)](
        x,
        y,
        weight if weight is not None else _dummy(x),
        bias if bias is not None else _dummy(x),
        alpha,
        shift if shift is not None else _dummy(x),
        n,
        c,
        inner,
        FUNCTION=TRITON_FUNCTIONS[function],
        HAS_SHIFT=shift is not None,
        AFFINE=weight is not None,
        BLOCK=block,
    )
    return y


def backward(
    grad: Tensor,
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    function: str,
    channels_first: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    x, grad = x.contiguous(), grad.contiguous()
    dx = torch.empty_like(x)
    r, k, _ = _as_2d(x, channels_first)
    c = x.shape[1] if channels_first else x.shape[-1]
    block_k = min(triton.next_power_of_2(k), 1024)
    block_r = max(1, min(64, 4096 // block_k))
    grid = (triton.cdiv(r, block_r), triton.cdiv(k, block_k))
    f32 = {"device": x.device, "dtype": torch.float32}
    part_a = torch.empty(grid[0] * grid[1], **f32)
    part_s = torch.empty(grid[0] * grid[1], **f32)
    affine = weight is not None
    if affine:
        shape = (grid[0], k) if not channels_first else (grid[1], r)
        part_w, part_b = torch.empty(shape, **f32), torch.empty(shape, **f32)
    else:
        part_w = part_b = _dummy(x)
    backward_kernel[grid](
        x,
        grad,
        dx,
        weight if affine else _dummy(x),
        alpha,
        shift if shift is not None else _dummy(x),
        part_w,
        part_b,
        part_a,
        part_s,
        r,
        k,
        c,
        FUNCTION=TRITON_FUNCTIONS[function],
        HAS_SHIFT=shift is not None,
        AFFINE=affine,
        CHANNEL_IS_COLUMN=not channels_first,
        BLOCK_R=block_r,
        BLOCK_K=block_k,
    )
    dalpha = part_a.sum().reshape(1).to(alpha.dtype)
    dshift = part_s.sum().reshape(1).to(shift.dtype) if shift is not None else None
    dweight = dbias = None
    if affine:
        dweight, dbias = part_w.sum(0), part_b.sum(0)
        if channels_first:
            dweight, dbias = dweight.view(-1, c).sum(0), dbias.view(-1, c).sum(0)
        dweight, dbias = dweight.to(weight.dtype), dbias.to(weight.dtype)
    return dx, dalpha, dshift, dweight, dbias
