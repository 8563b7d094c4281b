"""GPT-2 (Radford et al., 2019) on the shared backbone, with the norm slot of the Derf paper's language model.

Architecture as Hugging Face's ``GPT2LMHeadModel`` and nanoGPT's ``GPT`` define it: token embedding ``wte`` plus
learned absolute positions ``wpe``, embedding dropout, ``n_layer`` pre-norm blocks ``x + attn(ln_1(x))``
(causal self-attention, fused qkv) then ``x + mlp(ln_2(x))`` (4x MLP, GELU), a final norm ``ln_f`` and an LM
head tied to ``wte``. The blocks are the backbone's (:class:`~derf_zoo.backbone.Transformer`); the family owns only
the embeddings, the tied head and :meth:`GPT2.generate`.

The Derf paper's nanoGPT patch (shared/PAPER.md §3.5) adds two things, both model arguments here:

- one alpha per norm site: ``attn_alpha`` (``ln_1``, the attention pre-norm), ``mlp_alpha`` (``ln_2``) and
  ``final_alpha`` (``ln_f``), each 1.0 by default (the patch's ``attn/ffn/dec_alpha_init_value``). One alpha for
  every site is what people report as "does not converge" for LLM-style models;
- for point-wise norms, a learnable scalar ``shared_scale`` on ``tok_emb + pos_emb``, initialised to
  ``sqrt(n_embd)`` (27.7 for 768): GPT-2's embeddings start at std 0.02, and without a normalizing layer nothing
  rescales them, so activations start tiny and training stalls (the DyT paper's LLaMA trick, App. A).

Weight layouts: :func:`from_transformers` / :func:`to_transformers` (HF's ``Conv1D`` stores weights transposed)
and :func:`from_nanogpt` / :func:`to_nanogpt` (nanoGPT's ``ckpt.pt``, including the Derf patch's keys). Each
layout is one declarative table (:data:`HF_LAYOUT`, :data:`NANOGPT_LAYOUT`) of renames and named operations;
the reverse direction is derived from the same table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from derf_zoo.backbone import Transformer
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import load_into
from derf_zoo.layers import init_weights
from derf_zoo.layers.attention import KVCache
from derf_zoo.models._builder import build_model, check_int
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.layers import LayerNorm, PointwiseNorm
from derf_zoo.norms.registry import NormFactory, NormSpec, get_norm_layer, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import is_norm

__all__ = [
    "GPT2",
    "HF_LAYOUT",
    "NANOGPT_LAYOUT",
    "Layout",
    "from_nanogpt",
    "from_transformers",
    "to_nanogpt",
    "to_transformers",
    "to_transformers_state_dict",
]

#: GPT-2's norm sites: ``ln_1`` (before attention), ``ln_2`` (before the MLP), ``ln_f`` (after the last block).
GPT2_SITES = ("attn", "mlp", "final")
#: The official patch's default alpha for every site (``attn/ffn/dec_alpha_init_value = 1.0``).
DEFAULT_ALPHA = 1.0
Activation = Literal["gelu_tanh", "gelu"]


# ---- weight layouts: one table each, the reverse derived ---------------------------------------------------

@dataclass(frozen=True)
class Rename:
    """``ours`` <-> ``theirs`` (patterns: ``{i}`` a block index, ``{p}`` a parameter name); ``op`` is applied
    to the tensor on the way in and undone on the way out (``"transpose"``: HF's Conv1D stores ``[in, out]``)."""

    ours: str
    theirs: str
    op: Literal["copy", "transpose"] = "copy"


@dataclass(frozen=True)
class Tied:
    """``theirs`` holds the same tensor as ``same_as`` (the tied LM head): checked equal on the way in, written
    as that tensor on the way out."""

    theirs: str
    same_as: str


@dataclass(frozen=True)
class Ignored:
    """A key of theirs that is no weight (nanoGPT's non-flash causal-mask buffer): dropped on the way in."""

    theirs: str


def _pattern(text: str) -> re.Pattern[str]:
    escaped = re.escape(text).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>[A-Za-z_]+)")
    return re.compile(f"^{escaped}$")


@dataclass(frozen=True)
class Layout:
    """A foreign weight layout as one table of :class:`Rename`, :class:`Tied` and :class:`Ignored` rules.

    Attributes:
        name: what messages call it (``"transformers GPT2LMHeadModel"``).
        rules: the table.
        strip_prefixes: prefixes removed from their keys first (``_orig_mod.`` of a ``torch.compile``'d model).
    """

    name: str
    rules: tuple[Rename | Tied | Ignored, ...]
    strip_prefixes: tuple[str, ...] = ()

    def _renames(self) -> list[Rename]:
        return [r for r in self.rules if isinstance(r, Rename)]

    def to_ours(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Their keys -> ours.

        Raises:
            ValueError: keys no rule matches, two keys landing on one of ours, or a tied copy that differs.
        """
        sd: dict[str, Tensor] = {}
        for key, value in state_dict.items():
            for prefix in self.strip_prefixes:
                key = key[len(prefix):] if key.startswith(prefix) else key
            sd[key] = value
        out: dict[str, Tensor] = {}
        unknown: list[str] = []
        for key, value in sd.items():
            rule, match = self._match(key)
            if rule is None:
                unknown.append(key)
            elif isinstance(rule, Tied):
                if rule.same_as in sd and not torch.equal(sd[rule.same_as], value):
                    raise ValueError(f"{self.name}: {key!r} should be tied to {rule.same_as!r} but differs; these "
                                     "weights cannot be imported exactly (the zoo's GPT-2 has one tied head).")
            elif isinstance(rule, Rename):
                ours = rule.ours.format(**match.groupdict())
                if ours in out:
                    raise ValueError(f"{self.name}: two keys map onto {ours!r}; the state dict is not this layout.")
                out[ours] = value.t() if rule.op == "transpose" else value
        if unknown:
            raise ValueError(f"{self.name}: {len(unknown)} key(s) match no rule of the layout: {unknown[:8]}"
                             f"{' ...' if len(unknown) > 8 else ''}.")  # fmt: skip
        return out

    def to_theirs(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Our keys -> theirs: every :class:`Rename` backwards, then every :class:`Tied` copy.

        Raises:
            ValueError: one of our keys that the layout has no place for (the message names it).
        """
        out: dict[str, Tensor] = {}
        renames = [(r, _pattern(r.ours)) for r in self._renames()]
        missing = []
        for key, value in state_dict.items():
            for rule, pattern in renames:
                m = pattern.match(key)
                if m:
                    out[rule.theirs.format(**m.groupdict())] = value.t() if rule.op == "transpose" else value
                    break
            else:
                missing.append(key)
        if missing:
            raise ValueError(f"{self.name} has no place for {missing[:8]}: this model does not fit that layout.")
        for rule in self.rules:
            if isinstance(rule, Tied) and rule.same_as in out:
                out[rule.theirs] = out[rule.same_as]
        return out

    def _match(self, key: str) -> tuple[Rename | Tied | Ignored | None, re.Match[str] | None]:
        for rule in self.rules:
            m = _pattern(rule.theirs).match(key)
            if m:
                return rule, m
        return None, None


#: Hugging Face ``GPT2LMHeadModel``: Conv1D weights are ``[in, out]``, so every projection is transposed.
HF_LAYOUT = Layout("transformers GPT2LMHeadModel", (
    Rename("wte.weight", "transformer.wte.weight"),
    Rename("wpe.weight", "transformer.wpe.weight"),
    Rename("backbone.blocks.{i}.norm1.{p}", "transformer.h.{i}.ln_1.{p}"),
    Rename("backbone.blocks.{i}.mixer.qkv.weight", "transformer.h.{i}.attn.c_attn.weight", "transpose"),
    Rename("backbone.blocks.{i}.mixer.qkv.bias", "transformer.h.{i}.attn.c_attn.bias"),
    Rename("backbone.blocks.{i}.mixer.proj.weight", "transformer.h.{i}.attn.c_proj.weight", "transpose"),
    Rename("backbone.blocks.{i}.mixer.proj.bias", "transformer.h.{i}.attn.c_proj.bias"),
    Rename("backbone.blocks.{i}.norm2.{p}", "transformer.h.{i}.ln_2.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.weight", "transformer.h.{i}.mlp.c_fc.weight", "transpose"),
    Rename("backbone.blocks.{i}.mlp.fc1.bias", "transformer.h.{i}.mlp.c_fc.bias"),
    Rename("backbone.blocks.{i}.mlp.fc2.weight", "transformer.h.{i}.mlp.c_proj.weight", "transpose"),
    Rename("backbone.blocks.{i}.mlp.fc2.bias", "transformer.h.{i}.mlp.c_proj.bias"),
    Rename("backbone.norm.{p}", "transformer.ln_f.{p}"),
    Tied("lm_head.weight", same_as="transformer.wte.weight"),
))  # fmt: skip

#: nanoGPT's ``GPT`` (``nn.Linear`` projections, no transposes) and the Derf patch's keys: ``shared_scale`` and the
#: point-wise norms' ``alpha``/``shift``/``weight``/``bias`` under ``ln_1``/``ln_2``/``ln_f``.
NANOGPT_LAYOUT = Layout("nanoGPT GPT", (
    Rename("wte.weight", "transformer.wte.weight"),
    Rename("wpe.weight", "transformer.wpe.weight"),
    Rename("shared_scale", "shared_scale"),
    Rename("backbone.blocks.{i}.norm1.{p}", "transformer.h.{i}.ln_1.{p}"),
    Rename("backbone.blocks.{i}.mixer.qkv.{p}", "transformer.h.{i}.attn.c_attn.{p}"),
    Rename("backbone.blocks.{i}.mixer.proj.{p}", "transformer.h.{i}.attn.c_proj.{p}"),
    Rename("backbone.blocks.{i}.norm2.{p}", "transformer.h.{i}.ln_2.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.{p}", "transformer.h.{i}.mlp.c_fc.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc2.{p}", "transformer.h.{i}.mlp.c_proj.{p}"),
    Rename("backbone.norm.{p}", "transformer.ln_f.{p}"),
    Tied("lm_head.weight", same_as="transformer.wte.weight"),
    Ignored("transformer.h.{i}.attn.bias"),  # the causal mask nanoGPT registers when flash attention is missing
), strip_prefixes=("_orig_mod.",))  # fmt: skip


#: The GPT-2 family: next-token prediction (Hugging Face's "text-generation" pipeline tag).
FAMILY = register_family(ModelFamily(
    name="gpt2", norm_sites=GPT2_SITES, task="derf_zoo.tasks.LanguageModeling", task_type="text-generation",
))  # fmt: skip

CARD_INPUT = "token ids (batch, length), length <= {model.n_positions}, ids < {model.vocab_size}"
CARD_EXAMPLE = ("ids = model.generate(torch.zeros(1, 1, dtype=torch.long), max_new_tokens=50, top_k=10, "
                "generator=torch.Generator().manual_seed(0))")
TEXT_DATA_CFG = {"space": "text", "first_conv": None, "classifier": None, "card_input": CARD_INPUT,
                 "card_example": CARD_EXAMPLE}  # fmt: skip
#: The character vocabulary of the embedded Tiny Shakespeare (``derf_zoo.data.text.CharTokenizer``): decode the
#: generated ids with it.
SHAKESPEARE_DATA_CFG = {**TEXT_DATA_CFG, "tokenizer": "char:shakespeare", "card_example": CARD_EXAMPLE
                        + "\nfrom derf_zoo.data.text import shakespeare_tokenizer"
                        + "\ntext = shakespeare_tokenizer().decode(ids[0].tolist())"}


def _activation(name: Activation) -> type[nn.Module] | Any:
    if name == "gelu_tanh":
        return lambda: nn.GELU(approximate="tanh")  # HF's gelu_new
    if name == "gelu":
        return nn.GELU  # nanoGPT's MLP (exact erf GELU)
    raise ValueError(f"activation must be 'gelu_tanh' (HF GPT-2's gelu_new) or 'gelu' (nanoGPT), got {name!r}.")


def _site_norms(norm: NormSpec | Mapping[str, NormSpec], alphas: Mapping[str, float | None]) -> dict[str, Any]:
    """One factory per site, each point-wise one with its site's alpha (1.0 unless given or set in the spec)."""
    sites = resolve_norm_sites(norm, GPT2_SITES)
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


class GPT2(nn.Module, HubMixin):
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
        for name, value in (("vocab_size", vocab_size), ("n_positions", n_positions), ("n_embd", n_embd),
                            ("n_layer", n_layer), ("n_head", n_head)):  # fmt: skip
            check_int(name, value, 1)
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        if isinstance(embed_init_std, bool) or not isinstance(embed_init_std, (int, float)) or not (
                math.isfinite(embed_init_std) and embed_init_std > 0):  # fmt: skip
            raise ValueError(f"embed_init_std must be a finite number > 0, got {embed_init_std!r}.")
        self.embed_init_std = float(embed_init_std)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be true or false, got {bias!r}.")
        self.vocab_size, self.n_positions, self.n_embd = vocab_size, n_positions, n_embd
        self.max_seq_len = n_positions  # the context the tasks check windows against
        self.num_features = n_embd
        sites = _site_norms(norm, {"attn": attn_alpha, "mlp": mlp_alpha, "final": final_alpha})
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
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
        init_weights(self, _gpt2_init)
        nn.init.normal_(self.wte.weight, std=self.embed_init_std)
        std = 0.02 / math.sqrt(2 * len(self.backbone.blocks))
        for block in self.backbone.blocks:
            nn.init.normal_(block.mixer.proj.weight, std=std)
            nn.init.normal_(block.mlp.fc2.weight, std=std)
        if self.shared_scale is not None:
            self.shared_scale.fill_(self.embed_scale_init)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        """nanoGPT decays every >= 2-D weight (embeddings included) and nothing else: no extra names."""
        return set()

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


@torch.no_grad()
def _gpt2_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


# ---- entry points ---------------------------------------------------------------------------------------

#: HF's configurations (openai-community/gpt2, -medium, -large, -xl config.json): vocab 50257, context 1024.
_SIZES = {
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
#: The paper's rows (shared/PAPER.md §3.5): every site's alpha 1.0 (the patch's defaults), Derf/DyT with the
#: sqrt(d) embedding scale (model default for point-wise norms).
_PAPER_NORMS = {"ln": "layernorm", "dyt": "dyt", "derf": "derf", "rmsnorm": "rmsnorm"}


def _build(name: str, size: str, pretrained: bool, kwargs: dict[str, Any], norm: str | None = None) -> GPT2:
    args = {**_SIZES[size], **({"norm": norm} if norm is not None else {})}
    data_cfg = SHAKESPEARE_DATA_CFG if size == "nano" else TEXT_DATA_CFG
    return build_model(GPT2, name, pretrained=pretrained, model_args=args, data_cfg=data_cfg, **kwargs)


@register_model(family="gpt2")
def gpt2(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M (HF ``gpt2``: width 768, 12 layers, 12 heads, context 1024); any ``norm=`` (LayerNorm default)."""
    return _build("gpt2", "124m", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_medium(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 medium, 355M (width 1024, 24 layers, 16 heads); any ``norm=``."""
    return _build("gpt2_medium", "medium", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_large(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 large, 774M (width 1280, 36 layers, 20 heads); any ``norm=``."""
    return _build("gpt2_large", "large", pretrained, kwargs)

@register_model(family="gpt2")
def gpt2_xl(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 XL, 1.5B (width 1600, 48 layers, 25 heads); any ``norm=``."""
    return _build("gpt2_xl", "xl", pretrained, kwargs)

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_ln_openwebtext.yaml")
def gpt2_ln(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with LayerNorm: the paper's baseline row (val loss 2.94 on OpenWebText)."""
    return _build("gpt2_ln", "124m", pretrained, kwargs, _PAPER_NORMS["ln"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_dyt_openwebtext.yaml")
def gpt2_dyt(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with DyT (alpha 1.0 per site, sqrt(d) embedding scale): the paper's row (2.97)."""
    return _build("gpt2_dyt", "124m", pretrained, kwargs, _PAPER_NORMS["dyt"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_derf_openwebtext.yaml")
def gpt2_derf(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with Derf (alpha 1.0 per site, sqrt(d) embedding scale): the paper's row (2.94)."""
    return _build("gpt2_derf", "124m", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_124m_rmsnorm_openwebtext.yaml")
def gpt2_rmsnorm(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 124M with RMSNorm: the paper's v2 row (2.95)."""
    return _build("gpt2_rmsnorm", "124m", pretrained, kwargs, _PAPER_NORMS["rmsnorm"])

@register_model(family="gpt2")
def gpt2_nano(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano (character level: 65 tokens, context 64, width 64, 4 layers; embedding init std 0.32 and no
    embedding scale, see ``embed_init_std``), the demo's size; any ``norm=``."""
    return _build("gpt2_nano", "nano", pretrained, kwargs)

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_ln_shakespeare.yaml")
def gpt2_nano_ln(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with LayerNorm, trained on the embedded Tiny Shakespeare (characters)."""
    return _build("gpt2_nano_ln", "nano", pretrained, kwargs, _PAPER_NORMS["ln"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_dyt_shakespeare.yaml")
def gpt2_nano_dyt(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with DyT (alpha 1.0 per site; embedding std 0.32, no scale) on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_dyt", "nano", pretrained, kwargs, _PAPER_NORMS["dyt"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_derf_shakespeare.yaml")
def gpt2_nano_derf(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with Derf (alpha 1.0 per site; embedding std 0.32, no scale) on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_derf", "nano", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="gpt2", recipe="recipes/gpt2/gpt2_nano_rmsnorm_shakespeare.yaml")
def gpt2_nano_rmsnorm(pretrained: bool = False, **kwargs: Any) -> GPT2:
    """GPT-2 nano with RMSNorm on the embedded Tiny Shakespeare."""
    return _build("gpt2_nano_rmsnorm", "nano", pretrained, kwargs, _PAPER_NORMS["rmsnorm"])


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}


# ---- Hugging Face transformers ------------------------------------------------------------------------------

def _fresh_norm_prefixes(model: GPT2, sd: Mapping[str, Tensor]) -> tuple[str, ...]:
    """Point-wise norm sites whose weights hold none of their own (LayerNorm weights imported into Derf, DyT, ...):
    they start fresh, since LayerNorm's weight and bias do not carry over."""
    return tuple(name + "." for name, m in model.named_modules()
                 if is_norm(m) and isinstance(m, PointwiseNorm) and name + ".alpha" not in sd)  # fmt: skip


def _load_mapped(model: GPT2, sd: dict[str, Tensor], source: str) -> GPT2:
    fresh = _fresh_norm_prefixes(model, sd)
    if fresh:
        sd = {k: v for k, v in sd.items() if not k.startswith(fresh)}
    if model.shared_scale is not None and "shared_scale" not in sd:
        fresh = (*fresh, "shared_scale")
    if "shared_scale" in sd:
        sd["shared_scale"] = sd["shared_scale"].reshape(1)  # the patch's scalar, whatever shape it was saved with
    load_into(model, sd, source=source, may_be_missing=fresh)
    return model


def _args_from_hf_config(config: Any) -> dict[str, Any]:
    """A ``GPT2Config`` -> model arguments, refusing the options this GPT-2 does not implement."""
    n_embd = config.n_embd
    unsupported = {
        "activation_function": (config.activation_function, ("gelu_new", "gelu_pytorch_tanh", "gelu")),
        "n_inner": (config.n_inner, (None, 4 * n_embd)),
        "scale_attn_weights": (getattr(config, "scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (getattr(config, "scale_attn_by_inverse_layer_idx", False), (False,)),
    }
    for key, (value, ok) in unsupported.items():
        if value not in ok:
            raise ValueError(f"from_transformers: {key}={value!r} is not supported (supported: {ok}).")
    drops = {config.resid_pdrop, config.embd_pdrop, config.attn_pdrop}
    if len(drops) > 1:
        raise ValueError(f"from_transformers: the config has different dropouts (resid {config.resid_pdrop}, embd "
                         f"{config.embd_pdrop}, attn {config.attn_pdrop}); this GPT-2 has one: pass dropout=...")
    return {
        "vocab_size": config.vocab_size, "n_positions": config.n_positions, "n_embd": n_embd,
        "n_layer": config.n_layer, "n_head": config.n_head, "norm": "layernorm",
        "norm_eps": config.layer_norm_epsilon, "dropout": drops.pop(),
        "activation": "gelu" if config.activation_function == "gelu" else "gelu_tanh",
    }  # fmt: skip


def from_transformers(source: nn.Module | Mapping[str, Tensor], config: Any = None, **model_args: Any) -> GPT2:
    """Build a :class:`GPT2` holding the weights of a Hugging Face ``GPT2LMHeadModel`` (or its state dict).

    Args:
        source: a ``GPT2LMHeadModel`` (its ``config`` is read) or its state dict (then pass ``config``).
        config: a ``GPT2Config`` (needed with a state dict).
        **model_args: override the arguments read from the config; ``norm="derf"`` imports the weights into
            Derf sites, which start fresh (LayerNorm's weights do not carry over; see ``convert_norms`` for a
            fitted conversion).

    Raises:
        ValueError: a config option this GPT-2 does not implement, keys that are not the layout, or weights
            missing, unexpected or misshapen (nothing is loaded then).
    """
    if isinstance(source, nn.Module):
        config = source.config if config is None else config
        state_dict = source.state_dict()
    else:
        state_dict = source
    if config is None:
        raise ValueError("from_transformers: pass config=GPT2Config(...) with a state dict.")
    args = {**_args_from_hf_config(config), **model_args}
    model = GPT2(**args)
    model.model_args = args
    return _load_mapped(model, HF_LAYOUT.to_ours(state_dict), "from_transformers")


def _check_hf_compatible(model: GPT2) -> None:
    problems = [f"the {site!r} site is {spec}" for site, spec in model.norm_specs.items()
                if not spec.startswith("layernorm")]  # fmt: skip
    if model.shared_scale is not None:
        problems.append("it has an embedding scale (shared_scale)")
    if any(isinstance(m, nn.Linear) and m.bias is None for m in model.backbone.modules()):
        problems.append("it has no linear biases (bias=False)")
    if problems:
        raise ValueError(f"to_transformers: HF's GPT2LMHeadModel has LayerNorm in every site, biases and no embedding "
                         f"scale, but {'; '.join(problems)}. Use to_nanogpt for other norms.")  # fmt: skip


def to_transformers_state_dict(model: GPT2) -> dict[str, Tensor]:
    """Our weights in HF's ``GPT2LMHeadModel`` layout (Conv1D weights transposed, ``lm_head.weight`` tied)."""
    _check_hf_compatible(model)
    return {k: v.contiguous() for k, v in HF_LAYOUT.to_theirs(model.state_dict()).items()}


def to_transformers(model: GPT2) -> nn.Module:
    """A Hugging Face ``GPT2LMHeadModel`` with this model's weights (loaded with ``strict=True``), in the same
    train/eval mode.

    Raises:
        ValueError: a model HF's GPT-2 cannot hold (a norm other than LayerNorm, an embedding scale, no biases).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    _check_hf_compatible(model)
    d = model.n_embd
    block = model.backbone.blocks[0]
    eps = block.norm1.eps
    act = "gelu_new" if getattr(block.mlp.act, "approximate", "none") == "tanh" else "gelu"
    drop = model.drop.p
    config = GPT2Config(vocab_size=model.vocab_size, n_positions=model.n_positions, n_embd=d,
                        n_layer=len(model.backbone.blocks), n_head=block.mixer.num_heads, layer_norm_epsilon=eps,
                        activation_function=act, resid_pdrop=drop, embd_pdrop=drop, attn_pdrop=drop,
                        bos_token_id=min(50256, model.vocab_size - 1), eos_token_id=min(50256, model.vocab_size - 1))
    hf = GPT2LMHeadModel(config)
    hf.load_state_dict(to_transformers_state_dict(model), strict=True)
    return hf.train(model.training)


# ---- nanoGPT ------------------------------------------------------------------------------------------------

_NANOGPT_NORMS = {"derf": "derf", "dyt": "dyt"}  # the patch: anything else is LayerNorm
#: GPT-2's head counts by width, for a bare nanoGPT state dict without model_args.
_HEADS_BY_WIDTH = {size["n_embd"]: size["n_head"] for size in _SIZES.values()}


def _args_from_nanogpt(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """nanoGPT's ``model_args`` (plus the Derf patch's ``norm_type`` and alphas) -> ours."""
    norm = _NANOGPT_NORMS.get(str(model_args.get("norm_type", "layernorm")).lower(), "layernorm")
    args: dict[str, Any] = {
        "vocab_size": model_args["vocab_size"], "n_positions": model_args["block_size"],
        "n_embd": model_args["n_embd"], "n_layer": model_args["n_layer"], "n_head": model_args["n_head"],
        "bias": bool(model_args.get("bias", True)), "dropout": float(model_args.get("dropout", 0.0)),
        "norm": norm, "activation": "gelu",
    }  # fmt: skip
    if norm != "layernorm":
        for ours, theirs in (("attn_alpha", "attn_alpha_init_value"), ("mlp_alpha", "ffn_alpha_init_value"),
                             ("final_alpha", "dec_alpha_init_value")):  # fmt: skip
            args[ours] = float(model_args.get(theirs, DEFAULT_ALPHA))
        args["embed_scale"] = True
    return args


def _args_from_nanogpt_weights(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Shapes of a mapped nanoGPT state dict -> model arguments (heads from GPT-2's sizes by width)."""
    if "wte.weight" not in sd or "wpe.weight" not in sd:
        raise ValueError("from_nanogpt: no transformer.wte / transformer.wpe weights; not a nanoGPT state dict.")
    vocab, d = sd["wte.weight"].shape
    if d not in _HEADS_BY_WIDTH:
        raise ValueError(f"from_nanogpt: width {d} is no GPT-2 size, so the head count is unknown; pass n_head=... "
                         "(or the checkpoint's model_args).")  # fmt: skip
    has_alpha = "backbone.blocks.0.norm1.alpha" in sd
    norm = ("derf" if "backbone.blocks.0.norm1.shift" in sd else "dyt") if has_alpha else "layernorm"
    return {"vocab_size": vocab, "n_positions": sd["wpe.weight"].shape[0], "n_embd": d,
            "n_layer": 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks.")),
            "n_head": _HEADS_BY_WIDTH[d], "bias": "backbone.blocks.0.mixer.qkv.bias" in sd, "norm": norm,
            "embed_scale": "shared_scale" in sd, "activation": "gelu"}  # fmt: skip


def from_nanogpt(source: str | Path | Mapping[str, Any], **model_args: Any) -> GPT2:
    """Build a :class:`GPT2` from nanoGPT weights: a ``ckpt.pt`` path, its loaded dict, or a bare state dict.

    A ``ckpt.pt`` is read with ``torch.load(weights_only=True)`` (it holds ``model``, ``optimizer``,
    ``model_args``, ``iter_num``, ``best_val_loss`` and ``config``, all plain types): nothing is unpickled. Its
    ``model_args`` give the architecture, including the Derf patch's ``norm_type`` and
    ``attn/ffn/dec_alpha_init_value``; a bare state dict is read from its shapes (heads by GPT-2's width).
    ``_orig_mod.`` prefixes of a compiled model are stripped.

    Args:
        source: the checkpoint path, the checkpoint dict, or a state dict.
        **model_args: override what was read (``n_head=`` for a bare state dict of another width).

    Raises:
        ValueError: keys outside the layout, a tied head that differs, or weights that do not fit.
    """
    if isinstance(source, (str, Path)):
        source = torch.load(source, map_location="cpu", weights_only=True)
    if "model" in source and isinstance(source["model"], Mapping):
        sd = NANOGPT_LAYOUT.to_ours(source["model"])
        args = _args_from_nanogpt(source["model_args"]) if "model_args" in source else _args_from_nanogpt_weights(sd)
    else:
        sd = NANOGPT_LAYOUT.to_ours(source)
        args = _args_from_nanogpt_weights(sd)
    args = {**args, **model_args}
    model = GPT2(**args)
    model.model_args = args
    return _load_mapped(model, sd, "from_nanogpt")


def _site_alpha(model: GPT2, site: str) -> float:
    factory = get_norm_layer(model.norm_specs[site])
    return float(getattr(factory, "kwargs", {}).get("alpha_init", DEFAULT_ALPHA))


def to_nanogpt(model: GPT2) -> dict[str, Any]:
    """A nanoGPT checkpoint dict ``{"model": state dict, "model_args": ...}`` of this model (``torch.save`` it as
    ``ckpt.pt``). Derf/DyT models carry the patch's ``norm_type``, alpha init values and ``shared_scale``.

    Raises:
        ValueError: a model nanoGPT cannot express (mixed norm types across sites, RMSNorm, an embedding scale on
            a LayerNorm model).
    """
    names = {spec.split("(")[0] for spec in model.norm_specs.values()}
    if len(names) != 1 or not names <= {"layernorm", "derf", "dyt"}:
        raise ValueError(f"to_nanogpt: nanoGPT (with the Derf patch) has one norm type of layernorm, derf or dyt for "
                         f"every site; this model has {model.norm_specs}.")  # fmt: skip
    norm = names.pop()
    if (model.shared_scale is not None) != (norm != "layernorm"):
        raise ValueError("to_nanogpt: the patch has the embedding scale exactly for derf/dyt; this model differs.")
    block = model.backbone.blocks[0]
    args: dict[str, Any] = {"n_layer": len(model.backbone.blocks), "n_head": block.mixer.num_heads,
                            "n_embd": model.n_embd, "block_size": model.n_positions,
                            "bias": block.mixer.qkv.bias is not None, "vocab_size": model.vocab_size,
                            "dropout": model.drop.p}  # fmt: skip
    if norm != "layernorm":
        args.update(norm_type=norm, attn_alpha_init_value=_site_alpha(model, "attn"),
                    ffn_alpha_init_value=_site_alpha(model, "mlp"), dec_alpha_init_value=_site_alpha(model, "final"))
    return {"model": NANOGPT_LAYOUT.to_theirs(model.state_dict()), "model_args": args}
