"""Caduceus (Schiff et al., 2024): bidirectional, reverse-complement aware Mamba DNA language models.

After ``caduceus/modeling_caduceus.py`` and ``modeling_rcps.py`` (kuleshov-group/caduceus). Blocks have no MLP:
``x + BiMamba(norm(x))`` (the reference's "Add -> Norm -> Mixer" ``Block`` is the same function), then the final
norm and an LM head tied to the token embedding. The norms are RMSNorm (eps 1e-5) and fill the norm slot:
``norm="derf"`` puts Derf with weight and bias in every one of them, as the authors' DNA patch does. The
reference's fused add+norm Triton path is not reproduced (it would call an RMSNorm kernel whatever module sits
in the slot).

* **Caduceus-Ph** (``rcps=False``): no parameter sharing; RC equivariance only post hoc, by averaging the logits
  of the reverse complement mapped back (``rc_average=True`` at inference, or :meth:`Caduceus.rc_averaged_logits`).
* **Caduceus-PS** (``rcps=True``): RC-equivariant by construction (:mod:`derf_zoo.layers.rcps`): the hidden
  state is ``2 * d_model`` wide (a forward and a reverse-complement half), the embedding, every mixer and norm
  and the LM head share their weights across the halves. ``d_model`` is the width of one half, as in the
  public ``kuleshov-group/caduceus-ps_*_d_model-118`` checkpoints (their hidden state is 236 wide).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.backbone import Transformer
from derf_zoo.data.dna import COMPLEMENT_IDS, VOCAB_SIZE
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import WeightsMismatchError, load_into
from derf_zoo.layers import init_weights
from derf_zoo.layers.bimamba import BiMamba
from derf_zoo.layers.rcps import RCPSEmbedding, RCPSWrapper, _reverse_complement_with_map, rcps_lm_logits
from derf_zoo.layers.selective_scan import DEFAULT_CHUNK_SIZE
from derf_zoo.models._builder import build_model, check_int, check_positive
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.registry import NormSpec, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import tag_site

__all__ = ["DNA_COMPLEMENT", "Caduceus", "caduceus_to_zoo_key", "dna_complement_map", "from_caduceus"]

#: Complement of each id of the HyenaDNA/Caduceus character tokenizer (``[CLS]`` 0 ... ``[UNK]`` 6 map to
#: themselves, A7 <-> T10, C8 <-> G9, N11 -> N11): the tokenizer's own table, one definition for data and model.
DNA_COMPLEMENT = tuple(COMPLEMENT_IDS.tolist())
#: The tokenizer's vocabulary (12) and the public checkpoints' ``pad_vocab_size_multiple`` (8): 16 rows.
DNA_VOCAB_SIZE = VOCAB_SIZE
PAD_VOCAB_SIZE_MULTIPLE = 8

#: Norm sites: before each BiMamba (the backbone's pre-mixer site, ``attn``) and after the last block.
NORM_SITES = ("attn", "final")


def dna_complement_map(vocab_size: int) -> Tensor:
    """The complement permutation over a (padded) vocabulary: DNA_COMPLEMENT, then padding ids map to themselves."""
    if vocab_size < len(DNA_COMPLEMENT):
        raise ValueError(f"vocab_size must cover the DNA tokenizer's {len(DNA_COMPLEMENT)} tokens, got {vocab_size}.")
    return torch.tensor(DNA_COMPLEMENT + tuple(range(len(DNA_COMPLEMENT), vocab_size)), dtype=torch.long)


def caduceus_to_zoo_key(key: str) -> str:
    """Map a key of the public ``kuleshov-group/caduceus-{ph,ps}`` layout (``CaduceusForMaskedLM``) to ours.

    ``caduceus.backbone.embeddings.word_embeddings.*`` -> ``word_embeddings.*``; ``caduceus.backbone.layers.N.``
    -> ``backbone.blocks.N.`` with ``norm`` -> ``norm1``; ``caduceus.backbone.norm_f`` -> ``backbone.norm``. The
    reference's tied copies (``mamba_rev.{in,out}_proj``, the LM head's weight, the head's complement map) map
    onto the one tensor we keep. Caduceus-PS checkpoints saved with ``fused_add_norm=True`` name their norms
    without ``.submodule``: load those with :func:`from_caduceus`, which knows the model.
    """
    for old, new in (
        ("caduceus.backbone.embeddings.word_embeddings.", "word_embeddings."),
        ("caduceus.backbone.norm_f.", "backbone.norm."),
        ("lm_head.lm_head.weight", "word_embeddings.embedding.weight"),
        ("lm_head.complement_map", "word_embeddings.complement_map"),
        ("lm_head.weight", "word_embeddings.weight"),
    ):
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith("caduceus.backbone.layers."):
        index, rest = key[len("caduceus.backbone.layers."):].split(".", 1)
        if rest.startswith("norm."):
            rest = "norm1." + rest[len("norm."):]
        for proj in ("in_proj.", "out_proj."):
            rest = rest.replace("mamba_rev." + proj, "mamba_fwd." + proj)
        return f"backbone.blocks.{index}.{rest}"
    return key


#: The Caduceus family: masked DNA language models; the HF layout imports with caduceus_to_zoo_key.
FAMILY = register_family(ModelFamily(
    name="caduceus", norm_sites=NORM_SITES, task="derf_zoo.tasks.DNALanguageModeling", task_type="fill-mask",
    key_maps={"caduceus": caduceus_to_zoo_key},
))  # fmt: skip


def _rcps_norm(factory: Any, site: str) -> Any:
    """A norm-site factory whose layer normalises each half (the RC half flipped back) with one shared norm."""

    def build(num_features: int, **kwargs: Any) -> nn.Module:
        return RCPSWrapper(tag_site(factory(num_features // 2, **kwargs), site))

    return build


class Caduceus(nn.Module, HubMixin):
    """Caduceus masked language model over DNA tokens: ``model(input_ids) -> logits (B, L, vocab)``.

    Args:
        vocab_size: tokenizer vocabulary (12); the embedding is padded to ``pad_vocab_size_multiple``.
        d_model: width (of one half for ``rcps=True``).
        n_layer: blocks.
        d_state: SSM state size.
        d_conv: causal convolution width.
        expand: Mamba inner width over ``d_model``.
        rcps: Caduceus-PS (RC-equivariant parameter sharing) instead of Caduceus-Ph.
        norm: norm spec for every site, or per site (``attn``, ``final``); default RMSNorm.
        norm_eps: eps of normalising layers (the reference's 1e-5).
        bidirectional_weight_tie: BiMamba shares in/out projections between directions.
        pad_vocab_size_multiple: pad the embedding rows to a multiple of this.
        rc_average: in evaluation mode, return the average of the logits and the reverse complement's logits
            mapped back (the Caduceus-Ph inference of the paper; a PS model is equivariant already).
        rcps_swap_halves: reproduce the reference's fused add+norm Caduceus-PS block, which swaps the two halves
            of the residual stream before each block (set by :func:`from_caduceus` for checkpoints in that layout).
        chunk_size: chunk length of the selective scan.
        scan: ``"auto"``, ``"chunked"`` or ``"reference"`` (see :class:`~derf_zoo.layers.mamba.Mamba`).
        embed_init_std: std of the token embedding's normal init, which the tied LM head shares (reference 0.02).
            The head's largest logit at init is about ``d_model * std * 0.8``: 1.9 nats at width 118, 0.26 at the
            nano width 16, where a point-wise final norm then traps the model (issue 18); the nano size uses 0.32.
        site_alpha: default ``alpha_init`` per norm site for point-wise norms whose spec sets none
            (``{"final": 0.1}``); see :func:`~derf_zoo.norms.registry.resolve_norm_sites`.
    """

    def __init__(
        self,
        vocab_size: int = DNA_VOCAB_SIZE,
        d_model: int = 118,
        n_layer: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        rcps: bool = False,
        norm: NormSpec | Mapping[str, NormSpec] = "rmsnorm",
        norm_eps: float = 1e-5,
        bidirectional_weight_tie: bool = True,
        pad_vocab_size_multiple: int = PAD_VOCAB_SIZE_MULTIPLE,
        rc_average: bool = False,
        rcps_swap_halves: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        scan: str = "auto",
        embed_init_std: float = 0.02,
        site_alpha: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        for name, value, minimum in (("vocab_size", vocab_size, 1), ("d_model", d_model, 1), ("n_layer", n_layer, 1),
                                     ("pad_vocab_size_multiple", pad_vocab_size_multiple, 1)):  # fmt: skip
            check_int(name, value, minimum)
        if rcps_swap_halves and not rcps:
            raise ValueError("rcps_swap_halves only applies to Caduceus-PS (rcps=True).")
        self.embed_init_std = check_positive("embed_init_std", embed_init_std)
        self.vocab_size = vocab_size
        self.padded_vocab_size = -(-vocab_size // pad_vocab_size_multiple) * pad_vocab_size_multiple
        self.d_model, self.n_layer, self.rcps = d_model, n_layer, rcps
        self.rc_average, self.rcps_swap_halves = rc_average, rcps_swap_halves
        self.num_features = self.embed_dim = 2 * d_model if rcps else d_model
        self.register_buffer("complement_map", dna_complement_map(self.padded_vocab_size), persistent=False)
        if rcps:
            self.word_embeddings = RCPSEmbedding(self.padded_vocab_size, d_model, self.complement_map)
        else:
            self.word_embeddings = nn.Embedding(self.padded_vocab_size, d_model)
        sites = resolve_norm_sites(norm, NORM_SITES, site_alpha)
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
        mixer_args = {"d_state": d_state, "d_conv": d_conv, "expand": expand, "weight_tie": bidirectional_weight_tie,
                      "chunk_size": chunk_size, "scan": scan}  # fmt: skip

        def mixer(dim: int, layer_index: int) -> nn.Module:
            return RCPSWrapper(BiMamba(dim // 2, **mixer_args)) if rcps else BiMamba(dim, **mixer_args)

        block_norms = {s: _rcps_norm(f, s) for s, f in sites.items()} if rcps else dict(sites)
        self.backbone = Transformer(
            self.num_features, n_layer, mlp_ratio=0, norm={**block_norms, "mlp": block_norms["attn"]},
            norm_eps=norm_eps, mixer=mixer,
        )  # fmt: skip
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """The reference's init: Mamba's own (see :class:`~derf_zoo.layers.mamba.Mamba`), embedding N(0, 0.02)
        (``embed_init_std``),
        and every ``out_proj`` (both directions when ``bidirectional_weight_tie=False``) re-drawn with PyTorch's
        default and scaled by ``1/sqrt(n_layer)`` (GPT-2's residual scaling, ``rescale_prenorm_residual`` of the
        reference's ``_init_weights``, which matches every parameter named ``out_proj.weight``)."""

        def default(module: nn.Module) -> None:
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.embed_init_std)

        init_weights(self, default)
        for module in self.modules():
            if isinstance(module, BiMamba):
                for mamba in (module.mamba_fwd, module.mamba_rev):
                    if mamba.out_proj is not None:  # a weight-tied reverse Mamba borrows the forward out_proj
                        nn.init.kaiming_uniform_(mamba.out_proj.weight, a=math.sqrt(5))
                        mamba.out_proj.weight /= math.sqrt(self.n_layer)

    @property
    def embedding_weight(self) -> Tensor:
        """The (padded vocab, d_model) token table, which the LM head shares."""
        return self.word_embeddings.weight

    def forward_features(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> hidden states after the final norm (B, L, ``num_features``)."""
        if input_ids.dim() != 2:
            raise ValueError(f"Caduceus expects token ids of shape (B, L), got {tuple(input_ids.shape)}.")
        x = self.word_embeddings(input_ids)
        if not self.rcps_swap_halves:
            return self.backbone(x)
        half = self.d_model
        for block in self.backbone.blocks:  # the fused reference: residual halves swapped before each block
            x = block(torch.cat([x[..., half:], x[..., :half]], dim=-1))
        return self.backbone.norm(x)

    def forward_head(self, hidden: Tensor) -> Tensor:
        """Hidden states -> logits over the padded vocabulary (tied to the embedding)."""
        if self.rcps:
            return rcps_lm_logits(hidden, self.embedding_weight, self.complement_map)
        return nn.functional.linear(hidden, self.embedding_weight)

    def rc_averaged_logits(self, input_ids: Tensor) -> Tensor:
        """Mean of the logits and of the reverse complement's logits mapped back (flipped, complement-permuted)."""
        logits = self.forward_head(self.forward_features(input_ids))
        rc_ids = _reverse_complement_with_map(input_ids, self.complement_map)  # every padded-vocab id
        rc_logits = self.forward_head(self.forward_features(rc_ids)).flip(1)[..., self.complement_map]
        return (logits + rc_logits) / 2

    def forward(self, input_ids: Tensor) -> Tensor:
        """Token ids (B, L) -> logits (B, L, padded vocab); RC-averaged in evaluation when ``rc_average``."""
        if self.rc_average and not self.training:
            return self.rc_averaged_logits(input_ids)
        return self.forward_head(self.forward_features(input_ids))


# ---- entry points ---------------------------------------------------------------------------------------

#: The 1k-context GenomicBenchmarks models behind the papers' numbers (``caduceus-{ph,ps}_seqlen-1k_d_model-118_
#: n_layer-4_lr-8e-3``): d_model 118 (per half for PS), 4 layers, d_state 16, expand 2, vocab 12 -> 16.
_1K = {"d_model": 118, "n_layer": 4, "d_state": 16, "d_conv": 4, "expand": 2}
#: The model card's Input line and usage example (derf_zoo.hub.card fills {input_size}): token ids, not an image.
CARD_INPUT = ("DNA token ids (batch, length), length <= {input_size[0]}; A C G T N = ids 7 8 9 10 11 (the "
              "HyenaDNA/Caduceus character tokenizer)")
CARD_EXAMPLE = "logits = model(torch.randint(7, 11, (1, 256)))  # random A/C/G/T ids"
DNA_DATA_CFG = {"input_size": (1024,), "vocabulary": "dna_char", "classifier": None, "card_input": CARD_INPUT,
                "card_example": CARD_EXAMPLE}

# Paper §3.4: Derf alpha 0.5, shift 0 (the default "derf"), weight and bias; RMSNorm eps 1e-5 (the reference's).
_NORMS = {"derf": "derf", "rmsnorm": "rmsnorm"}


def _build(name: str, rcps: bool, norm: NormSpec | Mapping[str, NormSpec], pretrained: bool, kwargs: dict[str, Any]
           ) -> Caduceus:  # fmt: skip
    args = {**_1K, "rcps": rcps}
    if norm is not None:
        args["norm"] = norm
    return build_model(Caduceus, name, pretrained=pretrained, model_args=args, data_cfg=DNA_DATA_CFG, **kwargs)


@register_model(family="caduceus")
def caduceus_ph_1k(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph, 1k context (d_model 118, 4 layers); any ``norm=`` (default RMSNorm)."""
    return _build("caduceus_ph_1k", False, None, pretrained, kwargs)


@register_model(family="caduceus")
def caduceus_ps_1k(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-PS (RC-equivariant), 1k context (d_model 118 per half, 4 layers); any ``norm=`` (default RMSNorm)."""
    return _build("caduceus_ps_1k", True, None, pretrained, kwargs)


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_ph_1k_derf_hg38.yaml",
                conversion="recipes/caduceus/caduceus_ph_1k_derf_from_caduceus_hg38.yaml")
def caduceus_ph_1k_derf(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph 1k with Derf (alpha 0.5, weight and bias) in every RMSNorm site: the paper's row."""
    return _build("caduceus_ph_1k_derf", False, "derf", pretrained, kwargs)


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_ph_1k_rmsnorm_hg38.yaml")
def caduceus_ph_1k_rmsnorm(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph 1k with RMSNorm (eps 1e-5): the paper's baseline row."""
    return _build("caduceus_ph_1k_rmsnorm", False, "rmsnorm", pretrained, kwargs)


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_ps_1k_derf_hg38.yaml")
def caduceus_ps_1k_derf(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-PS 1k with Derf (alpha 0.5, weight and bias) in every RMSNorm site: the paper's row."""
    return _build("caduceus_ps_1k_derf", True, "derf", pretrained, kwargs)


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_ps_1k_rmsnorm_hg38.yaml")
def caduceus_ps_1k_rmsnorm(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-PS 1k with RMSNorm (eps 1e-5): the paper's baseline row."""
    return _build("caduceus_ps_1k_rmsnorm", True, "rmsnorm", pretrained, kwargs)


#: The demo's CPU-sized Caduceus-Ph (not a public checkpoint): width 16, 2 layers, the 1k models' other settings. At
#: width 16 the reference's embedding std 0.02 caps the tied head's logits near 0.26 nats and alpha 0.5 in the final
#: site lets the residual grow until erf saturates and no gradient passes (issue 18): embedding std 0.32 (x16) and a
#: final-site alpha of 0.1 keep it learning (scripts/probe_dna_saturation.py).
_NANO = {"d_model": 16, "n_layer": 2, "embed_init_std": 0.32, "site_alpha": {"final": 0.1}}
#: The nano model's Derf: the paper's alpha 0.5 before each mixer, 0.1 in the final site.
_NANO_DERF = {"attn": "derf(alpha=0.5, shift=0.0)", "final": "derf(alpha=0.1, shift=0.0)"}


@register_model(family="caduceus")
def caduceus_nano(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph nano (d_model 16, 2 layers), the demo's size; any ``norm=`` (default RMSNorm; a point-wise norm
    without its own alpha gets 0.1 in the final site; embedding std 0.32)."""
    return _build("caduceus_nano", False, None, pretrained, {**_NANO, **kwargs})


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_nano_derf_ecoli.yaml")
def caduceus_nano_derf(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph nano with Derf (shift 0, weight and bias; alpha 0.5 before the mixers, 0.1 in the final site),
    pretrained on E. coli."""
    return _build("caduceus_nano_derf", False, _NANO_DERF, pretrained, {**_NANO, **kwargs})


@register_model(family="caduceus", recipe="recipes/caduceus/caduceus_nano_rmsnorm_ecoli.yaml")
def caduceus_nano_rmsnorm(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph nano with RMSNorm (eps 1e-5) in every norm site, Caduceus' default, pretrained on E. coli."""
    return _build("caduceus_nano_rmsnorm", False, _NORMS["rmsnorm"], pretrained, {**_NANO, **kwargs})


default_cfgs: dict[str, dict] = {}


# ---- import of the public layout ------------------------------------------------------------------------


def from_caduceus(state_dict: Mapping[str, Tensor], **model_args: Any) -> Caduceus:
    """Build a :class:`Caduceus` and load a ``CaduceusForMaskedLM`` state dict (the HF layout) into it.

    ``rcps`` is read from the weights when not given (an ``RCPSEmbedding`` has ``...word_embeddings.embedding``);
    a Caduceus-PS state dict saved with ``fused_add_norm=True`` (norms without ``.submodule``) gets
    ``rcps_swap_halves=True``, the block that layout was trained with.

    Args:
        state_dict: the reference's weights (``caduceus.backbone...``, ``lm_head...``).
        **model_args: :class:`Caduceus` arguments (``d_model``, ``n_layer``, ``d_state``, ``norm``...).

    Raises:
        WeightsMismatchError: keys missing or left over (each listed), or other shapes; nothing is loaded.
    """
    keys = set(state_dict)
    rcps = model_args.pop("rcps", any(".word_embeddings.embedding." in k for k in keys))
    fused_ps = rcps and any(k.startswith("caduceus.backbone.layers.") and ".norm.weight" in k for k in keys)
    model_args.setdefault("rcps_swap_halves", fused_ps)
    model = Caduceus(rcps=rcps, **model_args)

    def key_map(key: str) -> str:
        key = caduceus_to_zoo_key(key)
        if fused_ps:  # the fused layout's plain norm is one norm shared by both halves: ours wraps it
            for site in (".norm1.", "backbone.norm."):
                if site in key and ".submodule." not in key:
                    return key.replace(site, site + "submodule.")
        return key

    tied = [(a, b) for a, b in _tied_copies(keys) if not torch.equal(state_dict[a], state_dict[b])]
    if tied:
        raise WeightsMismatchError(f"from_caduceus: tied weights differ in the state dict ({tied[:4]}); this "
                                   "model shares them (bidirectional_weight_tie, tied LM head).")  # fmt: skip
    load_into(model, state_dict, source="the Caduceus state dict", key_map=key_map)
    return model


def _tied_copies(keys: set[str]) -> list[tuple[str, str]]:
    """Pairs of reference keys that hold the same tensor when tied (both present)."""
    pairs = []
    for k in keys:
        for proj in ("in_proj.", "out_proj."):
            if ".mamba_rev." + proj in k and k.replace("mamba_rev.", "mamba_fwd.") in keys:
                pairs.append((k, k.replace("mamba_rev.", "mamba_fwd.")))
    emb = "caduceus.backbone.embeddings.word_embeddings."
    for head, table in (("lm_head.weight", emb + "weight"), ("lm_head.lm_head.weight", emb + "embedding.weight")):
        if head in keys and table in keys:
            pairs.append((head, table))
    return pairs


def to_caduceus(model: Caduceus) -> dict[str, Tensor]:
    """Our weights in the reference's ``CaduceusForMaskedLM`` layout (non-fused norms), tied copies written out.

    The inverse of :func:`caduceus_to_zoo_key`; used to test the import, and to hand weights to the reference.
    """
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("word_embeddings."):
            out["caduceus.backbone.embeddings." + key] = value
        elif key.startswith("backbone.norm."):
            out["caduceus.backbone.norm_f." + key[len("backbone.norm."):]] = value
        elif key.startswith("backbone.blocks."):
            index, rest = key[len("backbone.blocks."):].split(".", 1)
            rest = "norm." + rest[len("norm1."):] if rest.startswith("norm1.") else rest
            out[f"caduceus.backbone.layers.{index}.{rest}"] = value
            mixer = model.backbone.blocks[int(index)].mixer
            bimamba = mixer.submodule if isinstance(mixer, RCPSWrapper) else mixer
            if bimamba.weight_tie and (".mamba_fwd.in_proj." in rest or ".mamba_fwd.out_proj." in rest):
                # The reference's reverse Mamba holds the same Parameter under its own name.
                out[f"caduceus.backbone.layers.{index}.{rest.replace('mamba_fwd.', 'mamba_rev.')}"] = value
        else:
            raise KeyError(f"to_caduceus: no reference name for {key!r}.")
    if model.rcps:
        out["lm_head.lm_head.weight"] = model.embedding_weight.detach()
        out["lm_head.complement_map"] = model.complement_map
    else:
        out["lm_head.weight"] = model.embedding_weight.detach()
    return out
