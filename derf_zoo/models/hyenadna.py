"""HyenaDNA (Nguyen et al., 2023): a causal DNA language model of Hyena mixers on the shared backbone.

Architecture after HazyResearch/hyena-dna (``src/models/sequence/long_conv_lm.py``, ``standalone_hyenadna.py``):
token embedding (vocabulary padded to ``pad_vocab_size_multiple``, 12 -> 16 in the public checkpoints), embedding
dropout, ``n_layer`` pre-norm blocks ``x + hyena(norm1(x))`` then ``x + mlp(norm2(x))`` (MLP ``d_inner = 4 d``,
tanh-GELU), a final norm and an LM head tied to the embedding. The reference's block is written "dropout -> add
-> LN -> mixer" to fuse kernels; with its residual dropout 0 that is exactly this pre-norm block. Its
``residual_in_fp32`` only matters under half precision; here the residual stream is the model's dtype.

Norm sites (the slot): ``attn`` (before the Hyena mixer, the backbone's name for the mixer sub-layer's norm),
``mlp`` and ``final``; LayerNorm (eps 1e-5) by default. The Derf paper (shared/PAPER.md §3.4) replaces every
``nn.LayerNorm`` of HyenaDNA by Derf with alpha 0.5, shift 0.

:func:`from_hyenadna` imports a state dict of the public ``LongSafari/hyenadna-*`` layout (the Lightning
``weights.ckpt``'s ``model.`` keys, the standalone ``backbone.`` keys or the ``-hf`` port's ``hyena.`` keys);
:func:`hyenadna_to_zoo_key` is the family's ``"hyenadna"`` key map.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from derf_zoo.backbone import Transformer
from derf_zoo.data.dna import PAD_ID, VOCAB_SIZE
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import load_into
from derf_zoo.layers import init_weights
from derf_zoo.layers.hyena import HyenaOperator  # noqa: F401  (registers the "hyena" mixer)
from derf_zoo.layers.mixers import MixerFactory, MixerSpec, get_mixer
from derf_zoo.models._builder import build_model, check_int, check_positive
from derf_zoo.models._context import check_context
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import is_norm

__all__ = ["HyenaDNA", "from_hyenadna", "hyenadna_to_zoo_key"]

#: The HyenaDNA norm sites: before the Hyena mixer, before the MLP, after the last block.
HYENADNA_SITES = ("attn", "mlp", "final")

#: The character vocabulary of the public checkpoints ([CLS] [SEP] [BOS] [MASK] [PAD] [RESERVED] [UNK] A C G T N).
DNA_VOCAB_SIZE = VOCAB_SIZE

_LAYER_RE = re.compile(r"^backbone\.layers\.(\d+)\.(.*)$")
_FREQ_RE = re.compile(r"filter_fn\.implicit_filter\.\d+\.freq$")


def hyenadna_to_zoo_key(key: str) -> str:
    """Map a key of the public HyenaDNA layout to ours.

    Accepts the Lightning checkpoint's ``model.`` prefix, the ``-hf`` port's ``hyena.`` prefix, and the
    ``.mixer.layer.`` / ``.mlp.layer.`` names of models trained with gradient checkpointing. The tied
    ``lm_head.weight`` maps onto the embedding; every ``implicit_filter.<odd>.freq`` (one shared sine) onto
    ``filter_fn.sin.freq``.
    """
    for prefix in ("model.", "hyena."):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    key = key.replace(".mixer.layer.", ".mixer.").replace(".mlp.layer.", ".mlp.")
    if key in ("backbone.embeddings.word_embeddings.weight", "lm_head.weight"):
        return "embeddings.weight"
    if key.startswith("backbone.ln_f."):
        return "backbone.norm." + key[len("backbone.ln_f."):]
    m = _LAYER_RE.match(key)
    if m:
        i, rest = m.groups()
        return f"backbone.blocks.{i}.{_FREQ_RE.sub('filter_fn.sin.freq', rest)}"
    return key


#: The HyenaDNA family: next-token prediction, so Hugging Face's "text-generation" pipeline tag (the ``-hf``
#: checkpoints are ``HyenaDNAForCausalLM``).
FAMILY = register_family(ModelFamily(
    name="hyenadna", norm_sites=HYENADNA_SITES, task="derf_zoo.tasks.DNALanguageModeling",
    task_type="text-generation", key_maps={"hyenadna": hyenadna_to_zoo_key},
))  # fmt: skip

#: The model card's Input line and usage example (derf_zoo.hub.card fills the {model.*} fields): token ids.
CARD_INPUT = ("DNA token ids (batch, length), length <= {model.max_seq_len}; A C G T N = ids 7 8 9 10 11 (the "
              "HyenaDNA/Caduceus character tokenizer)")
CARD_EXAMPLE = "logits = model(torch.randint(7, 11, (1, {model.card_example_length})))  # random A/C/G/T ids"
DNA_DATA_CFG = {"space": "dna", "vocab_size": DNA_VOCAB_SIZE, "pad_token_id": PAD_ID,
                "first_conv": None, "classifier": None, "card_input": CARD_INPUT,
                "card_example": CARD_EXAMPLE}  # fmt: skip


def _tanh_gelu() -> nn.Module:
    return nn.GELU(approximate="tanh")


class HyenaDNA(nn.Module, HubMixin):
    """Causal DNA LM: ``forward(input_ids) -> logits (B, L, padded vocab)``.

    Args:
        vocab_size: tokens of the tokenizer (12 for the character vocabulary).
        pad_vocab_size_multiple: the embedding and head have ``vocab_size`` rounded up to a multiple of this
            (8 in the public checkpoints: 16 rows).
        d_model: width.
        n_layer: blocks.
        d_inner: MLP width (default ``4 * d_model``).
        max_seq_len: longest input (the implicit filter's length; the public checkpoints use the training
            length + 2, e.g. 1026).
        mixer: mixer spec; a Hyena spec gets ``l_max=max_seq_len`` unless it sets it.
        norm: norm spec for every site or per site (``attn``, ``mlp``, ``final``).
        norm_eps: eps of normalizing layers (reference 1e-5).
        embed_dropout: dropout after the embedding (reference 0.1).
        embed_init_std: std of the embedding's normal init, which is also the tied head's (reference 0.02). The
            head's largest logit at init is about ``d_model * std * 0.8``: 4 nats at the paper's width 256 but
            0.5 at width 32, where a point-wise final norm then traps the model (issue 18); the nano sizes use
            0.32.
        site_alpha: default ``alpha_init`` per norm site for point-wise norms whose spec sets none
            (``{"final": 0.1}``); see :func:`~derf_zoo.norms.registry.resolve_norm_sites`.
    """

    def __init__(
        self,
        vocab_size: int = DNA_VOCAB_SIZE,
        pad_vocab_size_multiple: int = 8,
        d_model: int = 128,
        n_layer: int = 2,
        d_inner: int | None = None,
        max_seq_len: int = 1026,
        mixer: MixerSpec = "hyena(order=2, filter_order=64)",
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-5,
        embed_dropout: float = 0.1,
        embed_init_std: float = 0.02,
        site_alpha: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        for name, value, minimum in (("vocab_size", vocab_size, 1), ("pad_vocab_size_multiple",
                                     pad_vocab_size_multiple, 1), ("d_model", d_model, 1), ("n_layer", n_layer, 1),
                                     ("max_seq_len", max_seq_len, 1)):  # fmt: skip
            check_int(name, value, minimum)
        d_inner = 4 * d_model if d_inner is None else d_inner
        check_int("d_inner", d_inner, 1)
        self.embed_init_std = check_positive("embed_init_std", embed_init_std)
        self.num_tokens = vocab_size
        self.vocab_size = math.ceil(vocab_size / pad_vocab_size_multiple) * pad_vocab_size_multiple
        self.num_features = self.d_model = d_model
        self.max_seq_len = max_seq_len
        factory = get_mixer(mixer)
        if isinstance(factory, MixerFactory) and "l_max" in factory.entry.keywords and "l_max" not in factory.kwargs:
            factory = MixerFactory(factory.name, {**factory.kwargs, "l_max": max_seq_len})
        self.embeddings = nn.Embedding(self.vocab_size, d_model)
        self.embed_drop = nn.Dropout(embed_dropout)
        sites = resolve_norm_sites(norm, FAMILY.norm_sites, site_alpha)
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
        # the backbone's MLP width is int(d_model * mlp_ratio); the half keeps float round-off from losing a unit
        self.backbone = Transformer(d_model, n_layer, mlp_ratio=(d_inner + 0.5) / d_model, norm=sites,
                                    norm_eps=norm_eps, act_layer=_tanh_gelu, mixer=factory)  # fmt: skip
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference's GPT-2 init: normal(0.02) linears (the filter MLP's too) and embedding (normal
        ``embed_init_std``), zero biases, and the residual outputs (``out_proj``, ``fc2``) at std 0.02 / sqrt(2
        n_layer). The short convolution keeps PyTorch's default and the filter's skip ``bias`` its normal draw, as in
        the reference."""
        init_weights(self, _gpt2_init)
        # Re-drawn at embed_init_std after the family init (one extra draw): the released nano weights start from
        # this order, so changing it would stop `derf-zoo demo dna` from reproducing their cards.
        nn.init.normal_(self.embeddings.weight, std=self.embed_init_std)
        std = 0.02 / math.sqrt(2 * len(self.backbone.blocks))
        for block in self.backbone.blocks:
            out_proj = getattr(block.mixer, "out_proj", None)
            if isinstance(out_proj, nn.Linear):
                nn.init.normal_(out_proj.weight, std=std)
            nn.init.normal_(block.mlp.fc2.weight, std=std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return set()

    @property
    def card_example_length(self) -> int:
        """The window of the model card's usage example: 256 tokens, fewer when ``max_seq_len`` is shorter."""
        return min(self.max_seq_len, 256)

    def _check_input(self, input_ids: Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            raise ValueError(f"HyenaDNA expects token ids of shape (batch, length) and an integer dtype, got "
                             f"{tuple(input_ids.shape)} {input_ids.dtype}.")  # fmt: skip
        check_context(self, input_ids.shape[1])

    def forward_features(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> hidden states (B, L, d_model) after the final norm."""
        self._check_input(input_ids)
        return self.backbone(self.embed_drop(self.embeddings(input_ids)))

    def forward_head(self, hidden: Tensor) -> Tensor:
        """Hidden states -> logits over the padded vocabulary, with the tied head."""
        return F.linear(hidden, self.embeddings.weight)

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(input_ids))

    def get_output_embeddings(self) -> nn.Embedding:
        """The head's weight is the embedding's (one parameter)."""
        return self.embeddings


@torch.no_grad()
def _gpt2_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


# ---- entry points ---------------------------------------------------------------------------------------

#: The public checkpoints' shapes (LongSafari/hyenadna-{tiny-1k,small-32k}-seqlen config.json): max length is
#: the training length + 2.
_SIZES = {
    "tiny_1k": {"d_model": 128, "n_layer": 2, "max_seq_len": 1024 + 2},
    "small_32k": {"d_model": 256, "n_layer": 4, "max_seq_len": 32768 + 2},
    # The demo's CPU-sized model (not a public checkpoint): 256-base windows, width 32, filter MLP width 32. At width 32
    # the reference's embedding std 0.02 caps the tied head's logits near 0.5 nats and alpha 0.5 in the final site
    # lets the residual grow until erf saturates and no gradient passes (issue 18): embedding std 0.32 (x16) and a
    # final-site alpha of 0.1 keep it learning (scripts/probe_dna_saturation.py).
    "nano": {"d_model": 32, "n_layer": 2, "max_seq_len": 256 + 2, "mixer": "hyena(order=2, filter_order=32)",
             "embed_init_std": 0.32, "site_alpha": {"final": 0.1}},
}
#: shared/PAPER.md §3.4: every LayerNorm of HyenaDNA becomes Derf with alpha 0.5, shift 0.
_PAPER_NORMS = {"derf": "derf(alpha=0.5, shift=0.0)", "ln": "layernorm"}
#: The nano models' Derf: the paper's alpha 0.5 inside the blocks, 0.1 in the final site (see _SIZES["nano"]).
_NANO_DERF = {"default": "derf(alpha=0.5, shift=0.0)", "final": "derf(alpha=0.1, shift=0.0)"}


def _build(name: str, size: str, pretrained: bool, kwargs: dict[str, Any],
           norm: NormSpec | Mapping[str, NormSpec] = None) -> HyenaDNA:  # fmt: skip
    args = {**_SIZES[size], **({"norm": norm} if norm is not None else {})}
    return build_model(HyenaDNA, name, pretrained=pretrained, model_args=args, data_cfg=DNA_DATA_CFG, **kwargs)


@register_model(family="hyenadna")
def hyenadna_tiny_1k(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA tiny (width 128, 2 layers, 1k context: max length 1026); any ``norm=`` (LayerNorm default)."""
    return _build("hyenadna_tiny_1k", "tiny_1k", pretrained, kwargs)

@register_model(family="hyenadna")
def hyenadna_small_32k(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA small (width 256, 4 layers, 32k context: max length 32770); any ``norm=`` (LayerNorm default)."""
    return _build("hyenadna_small_32k", "small_32k", pretrained, kwargs)

@register_model(family="hyenadna", recipe="recipes/hyenadna/hyenadna_tiny_1k_derf_hg38.yaml",
                conversion="recipes/hyenadna/hyenadna_tiny_1k_derf_from_hyenadna_hg38.yaml")
def hyenadna_tiny_1k_derf(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA tiny-1k with Derf (alpha 0.5, shift 0) in every norm site: the paper's row."""
    return _build("hyenadna_tiny_1k_derf", "tiny_1k", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="hyenadna", recipe="recipes/hyenadna/hyenadna_tiny_1k_ln_hg38.yaml")
def hyenadna_tiny_1k_ln(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA tiny-1k with LayerNorm in every norm site: the paper's baseline row."""
    return _build("hyenadna_tiny_1k_ln", "tiny_1k", pretrained, kwargs, _PAPER_NORMS["ln"])

@register_model(family="hyenadna")
def hyenadna_small_32k_derf(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA small-32k with Derf (alpha 0.5, shift 0) in every norm site: the paper's row."""
    return _build("hyenadna_small_32k_derf", "small_32k", pretrained, kwargs, _PAPER_NORMS["derf"])

@register_model(family="hyenadna")
def hyenadna_small_32k_ln(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA small-32k with LayerNorm in every norm site: the paper's baseline row."""
    return _build("hyenadna_small_32k_ln", "small_32k", pretrained, kwargs, _PAPER_NORMS["ln"])


@register_model(family="hyenadna")
def hyenadna_nano(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA nano (width 32, 2 layers, 256-base windows: max length 258), the demo's size; any ``norm=`` (a
    point-wise norm without its own alpha gets 0.1 in the final site; embedding std 0.32)."""
    return _build("hyenadna_nano", "nano", pretrained, kwargs)


@register_model(family="hyenadna", recipe="recipes/hyenadna/hyenadna_nano_derf_ecoli.yaml")
def hyenadna_nano_derf(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA nano with Derf (shift 0; alpha 0.5 in the blocks, 0.1 in the final site), pretrained on E. coli."""
    return _build("hyenadna_nano_derf", "nano", pretrained, kwargs, _NANO_DERF)


@register_model(family="hyenadna", recipe="recipes/hyenadna/hyenadna_nano_ln_ecoli.yaml")
def hyenadna_nano_ln(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA nano with LayerNorm in every norm site, pretrained on the embedded E. coli."""
    return _build("hyenadna_nano_ln", "nano", pretrained, kwargs, _PAPER_NORMS["ln"])


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}


# ---- the public LongSafari/hyenadna layout ------------------------------------------------------------------

def _shared_tensors(sd: dict[str, Tensor], names: list[str], what: str) -> Tensor:
    """One tensor the reference stores under several names (tied or shared); they must agree."""
    first = sd[names[0]]
    differ = [n for n in names[1:] if sd[n].shape != first.shape or not torch.equal(sd[n], first)]
    if differ:
        raise ValueError(f"from_hyenadna: {what} should be one tensor, but {names[0]!r} differs from {differ}; "
                         "these weights cannot be imported exactly.")  # fmt: skip
    return first


def _args_from_hyenadna(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """Shapes of a (mapped) HyenaDNA state dict -> model arguments."""
    needed = ("embeddings.weight", "backbone.blocks.0.mixer.in_proj.weight", "backbone.blocks.0.mlp.fc1.weight",
              "backbone.blocks.0.mixer.filter_fn.implicit_filter.0.weight")  # fmt: skip
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ValueError(f"from_hyenadna: this does not look like a HyenaDNA state dict; after the key map it lacks "
                         f"{missing}.")  # fmt: skip
    vocab, d_model = sd["embeddings.weight"].shape
    prefix = "backbone.blocks.0.mixer."
    filter_linears = sorted(int(m.group(1)) for k in sd
                            if (m := re.match(re.escape(prefix) + r"filter_fn\.implicit_filter\.(\d+)\.weight$", k)))
    first = sd[prefix + "filter_fn.implicit_filter.0.weight"]
    mixer = {"name": "hyena", "order": sd[prefix + "in_proj.weight"].shape[0] // d_model - 1,
             "filter_order": first.shape[0], "emb_dim": first.shape[1],
             "short_filter_order": sd[prefix + "short_filter.weight"].shape[-1],
             "num_inner_mlps": len(filter_linears) - 2}  # fmt: skip
    args: dict[str, Any] = {
        "vocab_size": vocab,
        "pad_vocab_size_multiple": 1,
        "d_model": d_model,
        "n_layer": 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.blocks.")),
        "d_inner": sd["backbone.blocks.0.mlp.fc1.weight"].shape[0],
        "mixer": mixer,
    }
    if prefix + "filter_fn.pos_emb.z" in sd:
        args["max_seq_len"] = sd[prefix + "filter_fn.pos_emb.z"].shape[1]
    return args


def from_hyenadna(state_dict: Mapping[str, Tensor], **model_args: Any) -> HyenaDNA:
    """Build a :class:`HyenaDNA` holding a state dict of the public HyenaDNA layout.

    Width, depth, MLP width, vocabulary rows (already padded: 16 for the public checkpoints), Hyena order, filter
    MLP shape and the max length (from the positional buffer ``pos_emb.z``) are read from the weights;
    ``model_args`` override them (``norm="derf"`` imports into Derf sites, whose fresh norms are kept;
    ``max_seq_len=`` is needed when the state dict has no ``pos_emb`` buffers). The fixed buffers (``pos_emb.z``,
    ``pos_emb.t``, ``modulation.deltas``) are loaded when present and rebuilt otherwise. The reference's
    ``modulation_shift`` is not in the weights: the training code uses 0.0 (our default), the standalone/HF port
    0.05 (pass ``mixer={"name": "hyena", ..., "modulation_shift": 0.05}`` to match it).

    Raises:
        ValueError: not a HyenaDNA state dict, tied or shared tensors that differ, or weights missing,
            unexpected or misshapen (the message lists them; nothing is loaded then).
    """
    groups: dict[str, list[str]] = {}
    for key in state_dict:
        groups.setdefault(hyenadna_to_zoo_key(key), []).append(key)
    sd = {new: _shared_tensors(dict(state_dict), old, f"{new!r} (from {old})") if len(old) > 1 else state_dict[old[0]]
          for new, old in groups.items()}  # fmt: skip
    args = _args_from_hyenadna(sd)
    if isinstance(model_args.get("mixer"), Mapping):  # merge a partial Hyena spec into the one read from weights
        model_args = {**model_args, "mixer": {**args["mixer"], **model_args["mixer"]}}
    args = {**args, **model_args}
    if "max_seq_len" not in args:
        raise ValueError("from_hyenadna: the state dict has no pos_emb buffers to read the max length from; pass "
                         "max_seq_len=... (the training length + 2 for the public checkpoints).")  # fmt: skip
    model = HyenaDNA(**args)
    model.model_args = args
    fresh = model.state_dict()
    buffers = (".pos_emb.z", ".pos_emb.t", ".modulation.deltas")
    for key, value in fresh.items():  # rebuild the fixed buffers the weights do not carry
        if key.endswith(buffers) and key not in sd:
            sd[key] = value
    # A norm site imported into another norm (Derf, DyT, ...) starts fresh: LayerNorm's weights do not carry over.
    fresh_norms = tuple(name + "." for name, m in model.named_modules()
                        if is_norm(m) and not isinstance(m, nn.LayerNorm))  # fmt: skip
    sd = {k: v for k, v in sd.items() if not k.startswith(fresh_norms)} if fresh_norms else sd
    load_into(model, sd, source="from_hyenadna: the HyenaDNA state dict", may_be_missing=fresh_norms)
    return model
