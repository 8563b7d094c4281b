"""Pure-torch implementations of the point-wise norm: the eager formula and the fused forward/backward.

``eager_forward`` is the official-style module forward, autograd through torch ops (it keeps three
activation-sized tensors for the backward). ``fused_forward``/``fused_backward`` compute the same numbers
in float32 from ``x`` alone, with the derivative from the function table; they back the fused custom op
wherever the compiled CPU kernel or Triton does not apply (other functions, CUDA without Triton, ...).
"""

from __future__ import annotations

import torch
from torch import Tensor

from derf_zoo.norms.functions import get_function


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half/bfloat16/float32 inputs (low precision would lose the alpha/shift sums), float64 stays."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def channel_view(param: Tensor, x: Tensor, channels_first: bool) -> Tensor:
    """Reshape a per-channel [C] parameter to broadcast against ``x``."""
    if channels_first:
        return param.view(-1, *([1] * (x.dim() - 2)))
    return param


def reduce_to_channels(t: Tensor, channels_first: bool) -> Tensor:
    """Sum every dimension but the channel one."""
    if channels_first:
        return t.transpose(0, 1).reshape(t.shape[1], -1).sum(1)
    return t.reshape(-1, t.shape[-1]).sum(0)


def eager_forward(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    function: str,
    channels_first: bool,
) -> Tensor:
    u = alpha * x if shift is None else alpha * x + shift
    y = get_function(function).fn(u)
    if weight is not None:
        y = y * channel_view(weight, x, channels_first) + channel_view(bias, x, channels_first)
    return y


def fused_forward(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    function: str,
    channels_first: bool,
) -> Tensor:
    dt = compute_dtype(x)
    u = x.to(dt) * alpha.to(dt)
    if shift is not None:
        u += shift.to(dt)
    y = get_function(function).fn(u)
    if weight is not None:
        y = torch.addcmul(
            channel_view(bias.to(dt), x, channels_first), y, channel_view(weight.to(dt), x, channels_first)
        )
    return y.to(x.dtype)


def fused_backward(
    grad: Tensor,
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    function: str,
    channels_first: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients (dx, dalpha, dshift, dweight, dbias), recomputing ``u = alpha * x + shift`` from ``x``."""
    row = get_function(function)
    dt = compute_dtype(x)
    xf, g = x.to(dt), grad.to(dt)
    alpha_f = alpha.to(dt)
    u = xf * alpha_f
    if shift is not None:
        u += shift.to(dt)
    dweight = dbias = None
    if weight is not None:
        dweight = reduce_to_channels(g * row.fn(u), channels_first).to(weight.dtype)
        dbias = reduce_to_channels(g, channels_first).to(weight.dtype)
        g = g * channel_view(weight.to(dt), x, channels_first)
    gu = g * row.grad(u)
    dx = (gu * alpha_f).to(x.dtype)
    dalpha = (gu * xf).sum().reshape(1).to(alpha.dtype)
    dshift = gu.sum().reshape(1).to(shift.dtype) if shift is not None else None
    return dx, dalpha, dshift, dweight, dbias
