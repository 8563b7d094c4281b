"""The one Transformer backbone every family builds on.

A block is pre-norm residual: ``x + mixer(norm1(x))`` then ``x + mlp(norm2(x))``. The norm slot is
what the paper changes; the mixer slot takes attention, Hyena or BiMamba (any module mapping (B, L, D)
to (B, L, D)); ``mlp=None`` drops the feed-forward (Caduceus); ``modulation`` is the adaLN hook DiT uses
(shift/scale/gate from a conditioning vector). Families own only their stems and heads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.layers import AdaLNModulation, Attention, DropPath, LayerScale, Mlp, modulate
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites

__all__ = ["Transformer", "TransformerBlock", "tag_site"]

BLOCK_SITES = ("attn", "mlp", "final")


def tag_site(norm: nn.Module, site: str) -> nn.Module:
    """Record which norm site a layer fills (read by the NormStats callback to group its statistics)."""
    norm.norm_site = site
    return norm


class TransformerBlock(nn.Module):
    """Pre-norm residual block with a norm site per sub-layer.

    Args:
        dim: model width.
        mixer: token mixer, ``(B, L, D) -> (B, L, D)``; extra keyword arguments of ``forward`` go to it.
        mlp: feed-forward module, or None for a block without one.
        norm_attn: norm before the mixer (the ``attn`` site).
        norm_mlp: norm before the MLP (the ``mlp`` site); ignored when ``mlp`` is None.
        drop_path: stochastic-depth probability of both residual branches.
        layer_scale: initial value of per-channel LayerScale, or None for none.
        modulation: an :class:`~derf_zoo.layers.AdaLNModulation` producing (shift, scale, gate) per
            sub-layer from the conditioning vector passed to ``forward(x, cond)``; None for none.
    """

    def __init__(
        self,
        dim: int,
        mixer: nn.Module,
        mlp: nn.Module | None,
        norm_attn: nn.Module,
        norm_mlp: nn.Module | None,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        modulation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_attn
        self.mixer = mixer
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = mlp
        if mlp is not None:
            if norm_mlp is None:
                raise ValueError("TransformerBlock: a block with an MLP needs norm_mlp.")
            self.norm2 = norm_mlp
            self.ls2 = LayerScale(dim, layer_scale) if layer_scale is not None else nn.Identity()
            self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.modulation = modulation

    def forward(self, x: Tensor, cond: Tensor | None = None, **mixer_kwargs: Any) -> Tensor:
        if self.modulation is None:
            x = x + self.drop_path1(self.ls1(self.mixer(self.norm1(x), **mixer_kwargs)))
            if self.mlp is not None:
                x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
            return x
        if cond is None:
            raise ValueError("This block is modulated (adaLN): call it with a conditioning vector, forward(x, cond).")
        mods = self.modulation(cond)
        shift, scale, gate = mods[:3]
        h = self.mixer(modulate(self.norm1(x), shift, scale), **mixer_kwargs)
        x = x + self.drop_path1(gate.unsqueeze(1) * self.ls1(h))
        if self.mlp is not None:
            shift, scale, gate = mods[3:6]
            x = x + self.drop_path2(gate.unsqueeze(1) * self.ls2(self.mlp(modulate(self.norm2(x), shift, scale))))
        return x


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` plus the final norm site.

    Args:
        dim: model width.
        depth: number of blocks.
        num_heads: attention heads (default mixer).
        mlp_ratio: MLP hidden width over ``dim``; 0 builds blocks without an MLP.
        qkv_bias: bias on the attention's qkv projection.
        norm: one norm spec for every site or a per-site mapping over ``attn``, ``mlp``, ``final``
            (see :func:`derf_zoo.get_norm_layer`).
        norm_eps: eps passed to normalizing layers (point-wise layers ignore it).
        drop_path_rate: stochastic depth of the last block; it grows linearly from 0 over the depth.
        attn_drop: attention-probability dropout.
        proj_drop: dropout after the attention projection and in the MLP.
        layer_scale: LayerScale initial value, or None.
        causal: causal attention (language models).
        act_layer: MLP activation class.
        final_norm: apply the ``final`` norm site after the last block (a ViT with average pooling
            applies it after pooling instead, so it passes False).
        mixer: factory ``mixer(dim, layer_index) -> nn.Module`` replacing attention (Hyena, BiMamba).
        cond_dim: width of a conditioning vector; when set every block gets adaLN modulation.
        modulation_zero_init: start the modulation at zero (adaLN-Zero).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-6,
        drop_path_rate: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        layer_scale: float | None = None,
        causal: bool = False,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        final_norm: bool = True,
        mixer: Callable[[int, int], nn.Module] | None = None,
        cond_dim: int | None = None,
        modulation_zero_init: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"Transformer depth must be >= 1, got {depth}.")
        self.dim = dim
        self.depth = depth
        norms = resolve_norm_sites(norm, BLOCK_SITES)
        self.norm_specs = {site: norm_spec_string(f) for site, f in norms.items()}
        has_mlp = mlp_ratio > 0
        drop_rates = torch.linspace(0, drop_path_rate, depth).tolist()

        def build_mixer(i: int) -> nn.Module:
            if mixer is not None:
                return mixer(dim, i)
            return Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop, causal=causal)

        chunks = 6 if has_mlp else 3
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                mixer=build_mixer(i),
                mlp=Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop) if has_mlp else None,
                norm_attn=tag_site(norms["attn"](dim, eps=norm_eps), "attn"),
                norm_mlp=tag_site(norms["mlp"](dim, eps=norm_eps), "mlp") if has_mlp else None,
                drop_path=drop_rates[i],
                layer_scale=layer_scale,
                modulation=AdaLNModulation(cond_dim, dim, chunks, zero_init=modulation_zero_init) if cond_dim else None,
            )
            for i in range(depth)
        )
        self.norm = tag_site(norms["final"](dim, eps=norm_eps), "final") if final_norm else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor | None = None, **mixer_kwargs: Any) -> Tensor:
        """Args:
        x: tokens (B, L, D).
        cond: conditioning vector (B, cond_dim) for modulated blocks.
        **mixer_kwargs: passed to every mixer (``key_padding_mask=`` for attention).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"Transformer expects tokens of shape (B, L, {self.dim}), got {tuple(x.shape)}.")
        for block in self.blocks:
            x = block(x, cond, **mixer_kwargs)
        return self.norm(x)
