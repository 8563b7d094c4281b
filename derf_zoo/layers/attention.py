"""Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``, with a key/value cache.

The cache (:class:`KVCache`) belongs to the mixer: a causal model passes one ``KVCache`` through the backbone
(``backbone(x, kv_cache=cache)``), every attention layer appends its new keys and values under its own entry,
and the next call only computes the new tokens. Any causal family on the backbone can generate with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention", "KVCache"]


class KVCache:
    """Keys and values of the tokens seen so far, one entry per attention layer (keyed by the layer itself).

    Pass the same cache to every forward of one generation: a layer given ``kv_cache=cache`` attends over the
    cached keys/values plus those of its new tokens, and stores the union. :attr:`length` is the number of
    positions cached (what a model with absolute positions adds to the new tokens' positions).

    Args:
        max_length: refuse to grow past this many positions (a model's context); None for no limit.
    """

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length
        self._entries: dict[int, tuple[Tensor, Tensor]] = {}

    @property
    def length(self) -> int:
        """Positions cached so far (0 for an empty cache)."""
        return max((k.shape[2] for k, _ in self._entries.values()), default=0)

    def reset(self) -> None:
        """Forget every cached position."""
        self._entries.clear()

    def update(self, layer: nn.Module, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, int]:
        """Append ``k``/``v`` (B, heads, L_new, head_dim) to ``layer``'s entry.

        Returns:
            ``(keys, values, past)``: every cached key and value of the layer, new ones last, and how many
            positions were cached before this call.

        Raises:
            ValueError: the batch or head shape differs from the cached one, or the cache would exceed
                ``max_length``.
        """
        old = self._entries.get(id(layer))
        past = 0 if old is None else old[0].shape[2]
        if old is not None:
            if old[0].shape[:2] != k.shape[:2] or old[0].shape[3] != k.shape[3]:
                raise ValueError(f"KVCache: new keys of shape {tuple(k.shape)} do not extend the cached "
                                 f"{tuple(old[0].shape)} (same batch, heads and head width needed).")  # fmt: skip
            k, v = torch.cat([old[0], k], dim=2), torch.cat([old[1], v], dim=2)
        if self.max_length is not None and k.shape[2] > self.max_length:
            raise ValueError(f"KVCache: {k.shape[2]} positions exceed the cache's max_length={self.max_length}; "
                             "crop the context (generate() restarts the cache on the last max_length tokens).")
        self._entries[id(layer)] = (k, v)
        return k, v, past


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

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None,
                kv_cache: KVCache | None = None) -> Tensor:  # fmt: skip
        """Args:
        x: (B, L, D).
        kv_cache: keys/values of earlier tokens (causal generation): these L tokens come after them, attend to
            all of them, and are appended. Not combined with the masks.
        key_padding_mask: optional bool (B, L), True where a token is padding and must not be attended to.
        attn_mask: optional mask over (query, key) pairs, broadcastable to (B, num_heads, L, L) from (L, L),
            (B, L, L) or (B, num_heads, L, L): bool with True where attending is NOT allowed (the convention
            of ``nn.MultiheadAttention`` and of ``key_padding_mask``), or float, added to the attention logits.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if kv_cache is not None:
            return self._cached(q, k, v, kv_cache, key_padding_mask, attn_mask)
        mask = self._sdpa_mask(b, n, x, key_padding_mask, attn_mask)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=self.causal and mask is None,
        )  # fmt: skip
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))

    def _cached(self, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, key_padding_mask: Tensor | None,
                attn_mask: Tensor | None) -> Tensor:  # fmt: skip
        if key_padding_mask is not None or attn_mask is not None:
            raise ValueError("Attention: a kv_cache cannot be combined with key_padding_mask or attn_mask.")
        b, _, n, _ = q.shape
        k, v, past = cache.update(self, k, v)
        mask = None
        if self.causal and n > 1:
            # SDPA's is_causal aligns the mask to the top-left corner; with `past` cached keys, query i may see keys
            # 0 .. past + i (bottom-right alignment), so the mask is built here.
            mask = torch.ones(n, past + n, dtype=torch.bool, device=q.device).tril(diagonal=past)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.attn_drop if self.training else 0.0)  # fmt: skip
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, -1)))

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
