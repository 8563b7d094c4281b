"""Scale the gradient flowing back through a tensor without changing its value (fairseq's ``GradMultiply``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["grad_multiply"]


class _GradMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def grad_multiply(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward; ``scale * grad`` in the backward (wav2vec 2.0 slows the CNN's learning by 0.1)."""
    if scale == 1.0:
        return x
    return _GradMultiply.apply(x, scale)
