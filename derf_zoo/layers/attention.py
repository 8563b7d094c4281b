"""Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention"]


class Attention(nn.Module):
    """Self-attention mixer: ``(B, L, D) -> (B, L, D)``.

    Parameter names (``qkv``, ``proj``) follow timm's ViT so its weights map one to one.

    Args:
        dim: model width D.
        num_heads: number of heads; must divide ``dim``.
        qkv_bias: bias on the fused query/key/value projection.
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
        causal: mask future positions (language models).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.causal = causal
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Args:
        x: (B, L, D).
        key_padding_mask: optional bool (B, L), True where a token is padding and must not be attended to.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, n):
                raise ValueError(f"key_padding_mask must have shape {(b, n)}, got {tuple(key_padding_mask.shape)}.")
            mask = ~key_padding_mask.bool()[:, None, None, :]  # SDPA: True = may attend
            if self.causal:
                mask = mask & x.new_ones(n, n, dtype=bool).tril()
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=self.causal and mask is None,
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))
