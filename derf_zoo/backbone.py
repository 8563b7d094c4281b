"""The one Transformer backbone every family builds on.

A block is residual with a norm site per sub-layer: pre-norm ``x + mixer(norm1(x))`` then ``x + mlp(norm2(x))``
(``norm_first=True``, the default), or post-norm ``norm1(x + mixer(x))`` then ``norm2(x + mlp(x))``
(``norm_first=False``, wav2vec 2.0 Base). The norm slot is what the paper changes; the mixer slot takes
attention, Hyena or BiMamba by spec (any module mapping (B, L, D) to (B, L, D)); ``mlp=None`` drops the
feed-forward (Caduceus); ``modulation`` is the adaLN hook DiT uses (shift/scale/gate from a conditioning
vector). Families own only their stems and heads, and a final norm that sits outside the stack (after ViT's
pooling, inside DiT's modulated final layer, around wav2vec 2.0's encoder): they build the backbone with
``final_norm="none"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from derf_zoo.layers import AdaLNModulation, DropPath, LayerScale, Mlp, modulate
from derf_zoo.layers.mixers import MixerFactory, MixerSpec, get_mixer
from derf_zoo.norms.registry import NormSpec, resolve_norm_sites
from derf_zoo.norms.sites import tag_site

__all__ = ["BLOCK_SITES", "FINAL_NORM_PLACES", "FinalNorm", "Transformer", "TransformerBlock"]

#: The norm sites of the backbone: before the mixer, before the MLP, after the last block. A backbone without an MLP
#: has no ``mlp`` site and one built with ``final_norm="none"`` no ``final`` site (see :attr:`Transformer.sites`).
BLOCK_SITES = ("attn", "mlp", "final")

#: Where the backbone puts the ``final`` norm site: after the last block, or nowhere (the family places it).
FinalNorm = Literal["after", "none"]
FINAL_NORM_PLACES: tuple[str, ...] = ("after", "none")


class TransformerBlock(nn.Module):
    """Residual block with a norm site per sub-layer, pre-norm or post-norm.

    Args:
        dim: model width.
        mixer: token mixer, ``(B, L, D) -> (B, L, D)``; extra keyword arguments of ``forward`` go to it.
        mlp: feed-forward module, or None for a block without one.
        norm_attn: norm of the mixer sub-layer (the ``attn`` site).
        norm_mlp: norm of the MLP sub-layer (the ``mlp`` site); ignored when ``mlp`` is None.
        drop_path: stochastic-depth probability of both residual branches.
        layer_scale: initial value of per-channel LayerScale, or None for none.
        modulation: an :class:`~derf_zoo.layers.AdaLNModulation` producing (shift, scale, gate) per
            sub-layer from the conditioning vector passed to ``forward(x, cond)``; None for none.
        norm_first: True (default) applies each norm before its sub-layer (pre-norm); False after the residual
            sum (post-norm), as ``nn.TransformerEncoderLayer(norm_first=False)`` and wav2vec 2.0 Base.
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
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        if modulation is not None and not norm_first:
            raise ValueError("adaLN modulation acts on the pre-norm output; it needs norm_first=True.")
        self.norm_first = norm_first
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
        if self.modulation is not None:
            return self._modulated(x, cond, mixer_kwargs)
        if cond is not None:
            raise ValueError("This block has no adaLN modulation, so it cannot use a conditioning vector; build the "
                             "backbone with cond_dim=... or call it without cond.")  # fmt: skip
        if not self.norm_first:
            x = self.norm1(x + self.drop_path1(self.ls1(self.mixer(x, **mixer_kwargs))))
            if self.mlp is not None:
                x = self.norm2(x + self.drop_path2(self.ls2(self.mlp(x))))
            return x
        x = x + self.drop_path1(self.ls1(self.mixer(self.norm1(x), **mixer_kwargs)))
        if self.mlp is not None:
            x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x

    def _modulated(self, x: Tensor, cond: Tensor | None, mixer_kwargs: dict[str, Any]) -> Tensor:
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
        num_heads: attention heads (passed to mixers that take them).
        mlp_ratio: MLP hidden width over ``dim``; 0 builds blocks without an MLP.
        mlp_hidden_dim: MLP hidden width in units, instead of ``mlp_ratio`` (wav2vec 2.0's ``ffn_dim``, HyenaDNA's
            ``d_inner``: widths no ratio states exactly); 0 builds blocks without an MLP. None: ``mlp_ratio``.
        qkv_bias: bias on the attention's qkv projection.
        norm: one norm spec for every site or a per-site mapping over the sites this backbone has (``attn``, plus
            ``mlp`` with an MLP and ``final`` unless ``final_norm="none"``; see :attr:`sites` and
            :func:`derf_zoo.get_norm_layer`); a family passes the factories it resolved for those sites.
        norm_eps: eps passed to normalizing layers (point-wise layers ignore it).
        norm_first: pre-norm blocks (True) or post-norm blocks (False; see :class:`TransformerBlock`).
        drop_path_rate: stochastic depth of the last block; it grows linearly from 0 over the depth.
        layer_drop: LayerDrop (fairseq / transformers semantics): in training, skip each whole block with this
            probability; never in evaluation. The draws come from a counter-seeded generator, so every DDP rank
            skips the same blocks at the same step (they run the same number of forwards). A DDP run that skips
            blocks needs ``strategy: ddp_find_unused_parameters_true``.
        attn_drop: attention-probability dropout.
        proj_drop: dropout after the attention projection and after the MLP (and inside it, unless ``mlp_drop``).
        mlp_drop: dropout inside the MLP, after its activation (fairseq's ``activation_dropout``); None: ``proj_drop``.
        layer_scale: LayerScale initial value, or None.
        causal: causal attention (language models).
        act_layer: MLP activation class.
        final_norm: where the ``final`` norm site goes: ``"after"`` the last block (default), or ``"none"``: the
            backbone has no ``final`` site and the family places its own final norm (a ViT with average pooling
            after the pooling, DiT inside its modulated final layer, wav2vec 2.0 before the first block or after
            the last under its own name ``encoder_norm``).
        mixer: mixer spec (``"attention"``, ``"attention(causal=True)"``, a registered name from
            :func:`derf_zoo.layers.mixers.list_mixers`, or a callable ``mixer(dim, layer_index)``).
        cond_dim: width of a conditioning vector; when set every block gets adaLN modulation.
        modulation_zero_init: start the modulation at zero (adaLN-Zero).
        layer_drop_seed: seed of the LayerDrop draws.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        mlp_hidden_dim: int | None = None,
        qkv_bias: bool = True,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-6,
        norm_first: bool = True,
        drop_path_rate: float = 0.0,
        layer_drop: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        mlp_drop: float | None = None,
        layer_scale: float | None = None,
        causal: bool = False,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        final_norm: FinalNorm = "after",
        mixer: MixerSpec = None,
        cond_dim: int | None = None,
        modulation_zero_init: bool = True,
        layer_drop_seed: int = 0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"Transformer depth must be >= 1, got {depth}.")
        if not 0.0 <= layer_drop < 1.0:
            raise ValueError(f"layer_drop must be in [0, 1), got {layer_drop}.")
        if isinstance(final_norm, bool) or final_norm not in FINAL_NORM_PLACES:
            raise ValueError(f"final_norm must be one of {', '.join(map(repr, FINAL_NORM_PLACES))}, got "
                             f"{final_norm!r}.")  # fmt: skip
        mlp_hidden = self._mlp_hidden(dim, mlp_ratio, mlp_hidden_dim)
        self.dim = dim
        self.depth = depth
        self.layer_drop = layer_drop
        self.layer_drop_seed = layer_drop_seed
        self._layer_drop_calls = 0
        self.grad_checkpointing = False
        has_mlp = mlp_hidden > 0
        #: The norm sites this backbone has, in BLOCK_SITES order: a per-site ``norm`` mapping names exactly these.
        self.sites = tuple(s for s in BLOCK_SITES if (s != "mlp" or has_mlp) and (s != "final" or final_norm != "none"))
        norms = resolve_norm_sites(norm, self.sites)
        mixer_factory = get_mixer(mixer)
        mixer_args = {"num_heads": num_heads, "qkv_bias": qkv_bias, "attn_drop": attn_drop, "proj_drop": proj_drop,
                      "causal": causal}  # fmt: skip
        mlp_dropout = (proj_drop if mlp_drop is None else mlp_drop, proj_drop)
        drop_rates = torch.linspace(0, drop_path_rate, depth).tolist()

        def build_mixer(i: int) -> nn.Module:
            if isinstance(mixer_factory, MixerFactory):
                return mixer_factory(dim, i, **mixer_args)
            return mixer_factory(dim, i)  # a plain callable: the Python-only form, mixer(dim, layer_index)

        chunks = 6 if has_mlp else 3
        self.blocks = nn.ModuleList(
            TransformerBlock(
                dim,
                mixer=build_mixer(i),
                mlp=Mlp(dim, mlp_hidden, act_layer=act_layer, drop=mlp_dropout) if has_mlp else None,
                norm_attn=tag_site(norms["attn"](dim, eps=norm_eps), "attn"),
                norm_mlp=tag_site(norms["mlp"](dim, eps=norm_eps), "mlp") if has_mlp else None,
                drop_path=drop_rates[i],
                layer_scale=layer_scale,
                modulation=AdaLNModulation(cond_dim, dim, chunks, zero_init=modulation_zero_init) if cond_dim else None,
                norm_first=norm_first,
            )
            for i in range(depth)
        )
        self.norm = tag_site(norms["final"](dim, eps=norm_eps), "final") if "final" in self.sites else nn.Identity()

    @staticmethod
    def _mlp_hidden(dim: int, mlp_ratio: float, mlp_hidden_dim: int | None) -> int:
        """The MLP's hidden width (0: no MLP) from ``mlp_hidden_dim`` or else ``mlp_ratio``."""
        if mlp_hidden_dim is not None:
            if isinstance(mlp_hidden_dim, bool) or not isinstance(mlp_hidden_dim, int) or mlp_hidden_dim < 0:
                raise ValueError(f"mlp_hidden_dim must be an integer >= 0 (0: no MLP) or None, got {mlp_hidden_dim!r}.")
            return mlp_hidden_dim
        if mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0 (0: no MLP), got {mlp_ratio!r}.")
        hidden = int(dim * mlp_ratio)
        if mlp_ratio > 0 and hidden < 1:
            raise ValueError(f"mlp_ratio={mlp_ratio!r} gives an MLP of width int({dim} * {mlp_ratio!r}) = 0; pass "
                             "mlp_ratio=0 for blocks without an MLP, or mlp_hidden_dim for an exact width.")
        return hidden

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward instead of keeping them (timm's switch)."""
        self.grad_checkpointing = enable

    def _kept_blocks(self) -> list[nn.Module]:
        if not (self.training and self.layer_drop > 0):
            return list(self.blocks)
        # A generator seeded by (seed, call count): the same draws on every rank, no global RNG state touched.
        g = torch.Generator().manual_seed(self.layer_drop_seed * 1_000_003 + self._layer_drop_calls)
        self._layer_drop_calls += 1
        keep = torch.rand(self.depth, generator=g) >= self.layer_drop
        return [block for block, k in zip(self.blocks, keep.tolist()) if k]

    def forward(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        *,
        before_block: Callable[[Tensor], Tensor] | None = None,
        **mixer_kwargs: Any,
    ) -> Tensor:
        """Args:
        x: tokens (B, L, D).
        cond: conditioning vector (B, cond_dim) for modulated blocks.
        before_block: a map of the residual stream applied before each block that runs (not before a block
            LayerDrop skips; outside gradient checkpointing): the reference Caduceus-PS swaps the two halves of
            its residual there. It must keep the shape (B, L, D).
        **mixer_kwargs: passed to every mixer (``key_padding_mask=``, ``attn_mask=`` for attention).
        """
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"Transformer expects tokens of shape (B, L, {self.dim}), got {tuple(x.shape)}.")
        checkpointing = self.grad_checkpointing and torch.is_grad_enabled()
        for block in self._kept_blocks():
            if before_block is not None:
                x = before_block(x)
            if checkpointing:
                x = checkpoint(block, x, cond, use_reentrant=False, **mixer_kwargs)
            else:
                x = block(x, cond, **mixer_kwargs)
        return self.norm(x)
