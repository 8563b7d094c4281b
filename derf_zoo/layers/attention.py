"""Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
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

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """Args:
        x: (B, L, D).
        key_padding_mask: optional bool (B, L), True where a token is padding and must not be attended to.
        attn_mask: optional mask over (query, key) pairs, broadcastable to (B, num_heads, L, L) from (L, L),
            (B, L, L) or (B, num_heads, L, L): bool with True where attending is NOT allowed (the convention
            of ``nn.MultiheadAttention`` and of ``key_padding_mask``), or float, added to the attention logits.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        mask = self._sdpa_mask(b, n, x, key_padding_mask, attn_mask)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=self.causal and mask is None,
        )  # fmt: skip
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))

    def _sdpa_mask(self, b: int, n: int, x: Tensor, key_padding_mask: Tensor | None,
                   attn_mask: Tensor | None) -> Tensor | None:  # fmt: skip
        """One SDPA mask (bool: True = may attend, or additive float) from padding, pair mask and causality."""
        if key_padding_mask is None and attn_mask is None:
            return None  # SDPA's is_causal covers the causal case without a materialised mask
        allowed = x.new_ones(1, 1, n, n, dtype=torch.bool)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (b, n):
                raise ValueError(f"key_padding_mask must have shape {(b, n)}, got {tuple(key_padding_mask.shape)}.")
            allowed = allowed & ~key_padding_mask.bool()[:, None, None, :]
        if self.causal:
            allowed = allowed & x.new_ones(n, n, dtype=torch.bool).tril()
        if attn_mask is None:
            return allowed
        if attn_mask.dim() == 2:
            attn_mask = attn_mask[None, None]
        elif attn_mask.dim() == 3:
            attn_mask = attn_mask[:, None]
        valid = (b, 1), (self.num_heads, 1), (n,), (n,)
        if attn_mask.dim() != 4 or any(s not in ok for s, ok in zip(attn_mask.shape, valid)):
            raise ValueError(f"attn_mask must broadcast to (B={b}, heads={self.num_heads}, L={n}, L={n}) from "
                             f"(L, L), (B, L, L) or (B, heads, L, L); got {tuple(attn_mask.shape)}.")  # fmt: skip
        if attn_mask.dtype == torch.bool:
            return allowed & ~attn_mask
        if not attn_mask.is_floating_point():
            raise ValueError(f"attn_mask must be bool or floating point, got {attn_mask.dtype}.")
        return attn_mask.to(x.dtype).masked_fill(~allowed, float("-inf"))
