"""The GPT2 network: its modules, forward pass and norm sites (the family's doc: ``derf_zoo.models.gpt2``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from derf_zoo.backbone import Transformer
from derf_zoo.layers import gpt2_normal, init_weights, tanh_gelu
from derf_zoo.layers.attention import KVCache
from derf_zoo.models._base import ZooModel, check_sizes
from derf_zoo.models._builder import check_positive
from derf_zoo.norms.layers import LayerNorm, PointwiseNorm
from derf_zoo.norms.registry import NormFactory, NormSpec, norm_spec_string, resolve_norm_sites

__all__ = ["DEFAULT_ALPHA", "GPT2", "GPT2_SITES", "GPT2_SIZES", "Activation"]


#: GPT-2's norm sites: ``ln_1`` (before attention), ``ln_2`` (before the MLP), ``ln_f`` (after the last block).
GPT2_SITES = ("attn", "mlp", "final")
#: The official patch's default alpha for every site (``attn/ffn/dec_alpha_init_value = 1.0``).
DEFAULT_ALPHA = 1.0
Activation = Literal["gelu_tanh", "gelu"]


def _activation(name: Activation) -> type[nn.Module] | Any:
    if name == "gelu_tanh":
        return tanh_gelu  # HF's gelu_new
    if name == "gelu":
        return nn.GELU  # nanoGPT's MLP (exact erf GELU)
    raise ValueError(f"activation must be 'gelu_tanh' (HF GPT-2's gelu_new) or 'gelu' (nanoGPT), got {name!r}.")


def _site_norms(sites: Mapping[str, Any], alphas: Mapping[str, float | None]) -> dict[str, Any]:
    """The resolved factory of each site, each point-wise one with its site's alpha (1.0 unless given or set in the
    spec)."""
    out = {}
    for site, factory in sites.items():
        alpha = alphas[site]
        pointwise = isinstance(factory, NormFactory) and issubclass(factory.cls, PointwiseNorm)
        if not pointwise:
            if alpha is not None:
                raise ValueError(f"{site}_alpha={alpha!r} is given, but the {site!r} site's norm "
                                 f"({norm_spec_string(factory)}) has no alpha; only point-wise norms (derf, dyt, "
                                 "...) take one.")  # fmt: skip
            out[site] = factory
            continue
        spec_alpha = factory.kwargs.get("alpha_init")
        if spec_alpha is not None:
            if alpha is not None and alpha != spec_alpha:
                raise ValueError(f"The {site!r} site's alpha is given twice: {site}_alpha={alpha!r} and the norm spec "
                                 f"{norm_spec_string(factory)}; give it once.")  # fmt: skip
            out[site] = factory
        else:
            out[site] = NormFactory(factory.name, {**factory.kwargs, "alpha_init": DEFAULT_ALPHA if alpha is None
                                                   else alpha})  # fmt: skip
    return out


class GPT2(ZooModel):
    """GPT-2 language model: ``forward(input_ids) -> logits (B, L, vocab_size)``.

    Args:
        vocab_size: rows of the embedding and the tied head (50257 for GPT-2's BPE; nanoGPT pads to 50304).
        n_positions: context length (learned absolute positions).
        n_embd: width.
        n_layer: blocks.
        n_head: attention heads.
        norm: norm spec for every site or per site (``attn`` = ``ln_1``, ``mlp`` = ``ln_2``, ``final`` = ``ln_f``).
        norm_eps: eps of normalizing layers (GPT-2: 1e-5).
        attn_alpha / mlp_alpha / final_alpha: initial alpha of a point-wise norm at that site (None: 1.0, the
            official patch's default, unless the spec sets it); an error for a site without alpha.
        embed_scale: the learnable scalar ``shared_scale`` on ``tok_emb + pos_emb``. None (default): present,
            initialised to ``sqrt(n_embd)``, when the ``attn`` site is point-wise (as the patch does for derf and
            dyt), absent otherwise; True / False force it; a number sets its initial value.
        embed_init_std: std of the token embedding's normal init, which is also the tied head's (GPT-2: 0.02). The
            head's logits are bounded by |ln_f output| x |embedding row|, about ``embed_init_std * sqrt(n_embd)`` at
            init: 0.55 at width 768 but 0.16 at width 64, where a point-wise ``ln_f`` must saturate to fit even the
            character frequencies and then passes no gradient (recipes/gpt2/nano_alpha_grid.md); the nano size
            uses 0.32, as the nano DNA models do.
        dropout: embedding, attention-probability and residual dropout (nanoGPT's one ``dropout``).
        bias: biases in the linear layers and LayerNorms (HF: True; nanoGPT's ``train.py`` default: False).
            Point-wise norms always keep theirs (the patch's Derf ignores ``config.bias``).
        activation: ``"gelu_tanh"`` (HF's ``gelu_new``) or ``"gelu"`` (nanoGPT's exact GELU).
    """

    is_causal = True  # what the language-modeling task reads to choose next-token prediction
    norm_sites = GPT2_SITES
    no_weight_decay_names = frozenset()  # nanoGPT decays every >= 2-D weight (embeddings included), nothing more

    def __init__(
        self,
        vocab_size: int = 50257,
        n_positions: int = 1024,
        n_embd: int = 768,
        n_layer: int = 12,
        n_head: int = 12,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-5,
        attn_alpha: float | None = None,
        mlp_alpha: float | None = None,
        final_alpha: float | None = None,
        embed_scale: bool | float | None = None,
        embed_init_std: float = 0.02,
        dropout: float = 0.0,
        bias: bool = True,
        activation: Activation = "gelu_tanh",
    ) -> None:
        super().__init__()
        check_sizes(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.embed_init_std = check_positive("embed_init_std", embed_init_std)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be true or false, got {bias!r}.")
        self.vocab_size, self.n_positions, self.n_embd = vocab_size, n_positions, n_embd
        self.max_seq_len = n_positions  # the context the tasks check windows against
        self.num_features = n_embd
        alphas = {"attn": attn_alpha, "mlp": mlp_alpha, "final": final_alpha}
        sites = self.record_norms(_site_norms(resolve_norm_sites(norm, GPT2_SITES), alphas))
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        if embed_scale is None:
            embed_scale = isinstance(sites["attn"], NormFactory) and issubclass(sites["attn"].cls, PointwiseNorm)
        if isinstance(embed_scale, bool):
            self.embed_scale_init = math.sqrt(n_embd) if embed_scale else None
        elif isinstance(embed_scale, (int, float)) and math.isfinite(embed_scale) and embed_scale != 0:
            self.embed_scale_init = float(embed_scale)
        else:
            raise ValueError(f"embed_scale must be None, true, false or a finite non-zero number, got {embed_scale!r}.")
        if self.embed_scale_init is not None:
            self.shared_scale = nn.Parameter(torch.full((1,), self.embed_scale_init))
        else:
            self.register_parameter("shared_scale", None)
        self.drop = nn.Dropout(dropout)
        self.backbone = Transformer(n_embd, n_layer, num_heads=n_head, mlp_ratio=4.0, qkv_bias=bias, norm=sites,
                                    norm_eps=norm_eps, attn_drop=dropout, proj_drop=dropout, causal=True,
                                    act_layer=_activation(activation))  # fmt: skip
        if not bias:
            self._drop_biases()
        self.init_weights()

    def _drop_biases(self) -> None:
        """nanoGPT's ``bias=False``: no bias in any linear or LayerNorm (point-wise norms keep theirs)."""
        for module in self.backbone.modules():
            if isinstance(module, (nn.Linear, LayerNorm, nn.LayerNorm)) and module.bias is not None:
                module.register_parameter("bias", None)

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's init (HF ``_init_weights``, nanoGPT ``_init_weights``): normal(0.02) linears and embeddings, zero
        biases, and the residual projections (``c_proj`` of attention and MLP) at 0.02 / sqrt(2 n_layer); the token
        embedding at ``embed_init_std``."""
        init_weights(self, gpt2_normal)
        nn.init.normal_(self.wte.weight, std=self.embed_init_std)
        std = 0.02 / math.sqrt(2 * len(self.backbone.blocks))
        for block in self.backbone.blocks:
            nn.init.normal_(block.mixer.proj.weight, std=std)
            nn.init.normal_(block.mlp.fc2.weight, std=std)
        if self.shared_scale is not None:
            self.shared_scale.fill_(self.embed_scale_init)

    def get_output_embeddings(self) -> nn.Embedding:
        """The head's weight is the token embedding's (one parameter)."""
        return self.wte

    def _check_ids(self, input_ids: Tensor, past: int = 0) -> None:
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            got = f"{tuple(input_ids.shape)} {input_ids.dtype}" if isinstance(input_ids, Tensor) else repr(input_ids)
            raise ValueError(f"GPT2 expects token ids of shape (batch, length) and an integer dtype, got {got}.")
        n = input_ids.shape[1]
        if n == 0:
            raise ValueError("GPT2 got an empty sequence (length 0); give at least one token.")
        if past + n > self.n_positions:
            cached = f" after {past} cached" if past else ""
            raise ValueError(f"Inputs of {n} tokens{cached} are longer than the model's context of {self.n_positions} "
                             f"tokens (n_positions={self.n_positions}); use windows of at most {self.n_positions} "
                             "(generate() crops the context itself).")  # fmt: skip
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"Token id {bad} is outside the vocabulary [0, {self.vocab_size}) of this model "
                             f"(vocab_size={self.vocab_size}); check the tokenizer.")  # fmt: skip

    def forward_features(self, input_ids: Tensor, kv_cache: KVCache | None = None) -> Tensor:
        """Token ids (B, L) -> hidden states (B, L, n_embd) after ``ln_f``.

        With ``kv_cache``, the ids continue the cached tokens: their positions start after them.
        """
        past = kv_cache.length if kv_cache is not None else 0
        self._check_ids(input_ids, past)
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)
        if self.shared_scale is not None:
            x = x * self.shared_scale
        x = self.drop(x)
        return self.backbone(x, kv_cache=kv_cache) if kv_cache is not None else self.backbone(x)

    def forward_head(self, hidden: Tensor) -> Tensor:
        """Hidden states -> logits, with the head tied to ``wte``."""
        return F.linear(hidden, self.wte.weight)

    def forward(self, input_ids: Tensor, kv_cache: KVCache | None = None) -> Tensor:
        return self.forward_head(self.forward_features(input_ids, kv_cache))

    @torch.no_grad()
    def generate(self, ids: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> Tensor:  # fmt: skip
        """Sample ``max_new_tokens`` tokens after ``ids`` (nanoGPT's ``generate``, with a key/value cache).

        The model runs in eval mode (restored afterwards). When the sequence outgrows the context, the model sees
        only its last ``n_positions`` tokens, as nanoGPT crops it; with learned absolute positions the cache cannot
        slide, so from then on each step recomputes the cropped context (exactly what the uncached path does).

        Args:
            ids: prompt token ids, (B, L) or (L,), L >= 1.
            max_new_tokens: tokens to add (>= 0).
            temperature: logits are divided by it (> 0; lower is greedier).
            top_k: sample only among the ``top_k`` most likely tokens (>= 1; 1 is greedy); None for all.
            generator: the random source of the draws (reproducible samples).
            use_cache: keep keys/values between steps (same tokens as without, less compute).

        Returns:
            ``(B, L + max_new_tokens)`` ids (``(L + max_new_tokens,)`` for a 1-D prompt).

        Raises:
            ValueError: an empty prompt, ids outside the vocabulary, ``top_k`` < 1, ``temperature`` <= 0 or not
                finite, a negative ``max_new_tokens``.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}.")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                math.isfinite(temperature) and temperature > 0):  # fmt: skip
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r} (for greedy decoding use "
                             "top_k=1).")  # fmt: skip
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be an integer >= 1 or None, got {top_k!r}.")
        one_d = isinstance(ids, Tensor) and ids.dim() == 1
        ids = ids[None] if one_d else ids
        if isinstance(ids, Tensor) and ids.dim() == 2 and ids.shape[1] == 0:
            raise ValueError("generate() needs a prompt of at least one token, got an empty one (length 0).")
        self._check_ids(ids[:, -self.n_positions:])
        was_training = self.training
        self.eval()
        try:
            cache = KVCache() if use_cache else None
            for _ in range(max_new_tokens):
                if cache is not None and ids.shape[1] <= self.n_positions:
                    feed = ids[:, cache.length:]
                else:  # crop to the context (nanoGPT); a full cache starts over on the cropped window
                    feed = ids[:, -self.n_positions:]
                    if cache is not None:
                        cache.reset()
                logits = self.forward_head(self.forward_features(feed, cache)[:, -1]).float() / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
        finally:
            self.train(was_training)
        return ids[0] if one_d else ids


#: HF's configurations (openai-community/gpt2, -medium, -large, -xl config.json): vocab 50257, context 1024.
GPT2_SIZES = {
    "124m": {"n_embd": 768, "n_layer": 12, "n_head": 12},
    "medium": {"n_embd": 1024, "n_layer": 24, "n_head": 16},
    "large": {"n_embd": 1280, "n_layer": 36, "n_head": 20},
    "xl": {"n_embd": 1600, "n_layer": 48, "n_head": 25},
    # The demo's CPU-sized character model (not a public checkpoint): Tiny Shakespeare's 65 characters, 64 context.
    # Its token embedding starts at std 0.32 and has no sqrt(d) scale (embed_init_std explains why): with GPT-2's 0.02
    # and the scale every point-wise model of the paper's alpha grid stalled at this width.
    "nano": {"vocab_size": 65, "n_positions": 64, "n_embd": 64, "n_layer": 4, "n_head": 4, "embed_init_std": 0.32,
             "embed_scale": False},
}
