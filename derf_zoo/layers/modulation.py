"""adaLN modulation: shift, scale and gate for a block's sub-layers from a conditioning vector (DiT)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["AdaLNModulation", "fold_norm_affine", "modulate"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x * (1 + scale) + shift`` with per-sample (B, D) shift/scale broadcast over tokens of (B, L, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class AdaLNModulation(nn.Module):
    """``SiLU -> Linear(cond_dim, chunks * dim)``, split into ``chunks`` tensors of shape (B, dim).

    With 6 chunks (a DiT block) they are shift/scale/gate for the mixer then for the MLP. The Linear is
    named ``adaLN_modulation.1`` in the official DiT; here it is ``linear``.

    Args:
        cond_dim: width of the conditioning vector c (B, cond_dim).
        dim: model width.
        chunks: how many (B, dim) tensors to produce.
        zero_init: start with all-zero outputs (DiT's adaLN-Zero: every gate 0, every block the identity).
    """

    def __init__(self, cond_dim: int, dim: int, chunks: int = 6, *, zero_init: bool = True) -> None:
        super().__init__()
        self.chunks = chunks
        self.act = nn.SiLU()
        self.zero_init = zero_init
        self.linear = nn.Linear(cond_dim, chunks * dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, default: Callable[[nn.Module], None] | None = None) -> None:
        """adaLN-Zero keeps all-zero outputs whatever the family's init; otherwise the family's ``default``
        applies (called by :func:`derf_zoo.layers.init_weights`)."""
        if self.zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)
        elif default is not None:
            default(self.linear)

    def forward(self, c: Tensor) -> tuple[Tensor, ...]:
        return self.linear(self.act(c)).chunk(self.chunks, dim=-1)


@torch.no_grad()
def fold_norm_affine(modulation: AdaLNModulation, shift_chunk: int, scale_chunk: int, consumer: nn.Linear,
                     weight: Tensor, bias: Tensor) -> None:
    """Fold a per-channel affine of an affine-free norm's output into the modulation and the next linear layer.

    ``consumer(modulate(weight * z + bias, shift, scale))`` equals ``consumer'(modulate(z, shift', scale))`` with
    ``consumer'`` = the consumer with its input columns scaled by ``weight`` and ``shift' = (shift + bias * (1 +
    scale)) / weight``, which is affine in the conditioning vector, so it is exactly a change of the modulation's
    shift rows. Used by the fitted conversion (:func:`derf_zoo.norms.fit_pointwise_norms`): DiT's norms carry no
    affine, but a fitted one can still be applied.

    Args:
        modulation: the adaLN modulation that shifts and scales the norm's output.
        shift_chunk / scale_chunk: which of its chunks are that shift and scale.
        consumer: the linear layer that takes the modulated output (attention's qkv, the MLP's fc1, the head).
        weight / bias: the per-channel affine (C,); ``weight`` must have no zero.
    """
    dim = weight.numel()
    if bool((weight == 0).any()):
        raise ValueError("fold_norm_affine: a zero weight cannot be folded (the channel would be lost).")
    lin = modulation.linear
    shift_rows = slice(shift_chunk * dim, (shift_chunk + 1) * dim)
    scale_rows = slice(scale_chunk * dim, (scale_chunk + 1) * dim)
    w, b = weight.to(lin.weight), bias.to(lin.weight)
    new_weight = (lin.weight[shift_rows] + b[:, None] * lin.weight[scale_rows]) / w[:, None]
    new_bias = (lin.bias[shift_rows] + b * (1 + lin.bias[scale_rows])) / w
    lin.weight[shift_rows] = new_weight
    lin.bias[shift_rows] = new_bias
    consumer.weight.mul_(w.to(consumer.weight)[None, :])
