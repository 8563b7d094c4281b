"""adaLN modulation: shift, scale and gate for a block's sub-layers from a conditioning vector (DiT)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["AdaLNModulation", "modulate"]


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
