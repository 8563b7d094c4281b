"""Registered entry points of the hyenadna family: the HyenaDNA architectures (tiny-1k, small-32k, the paper's Derf/LN
settings, the nano), its data configs and its registry record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from derf_zoo.data.dna import DNA_VOCAB_CFG, dna_card_texts
from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.hyenadna.hyena import HyenaOperator  # noqa: F401  (registers the "hyena" mixer)
from derf_zoo.models.hyenadna.layouts import HYENADNA_CHECKPOINTED_LAYOUT, HYENADNA_LAYOUT
from derf_zoo.models.hyenadna.model import HYENADNA_SITES, HyenaDNA
from derf_zoo.norms.registry import NormSpec

__all__ = [
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "DNA_DATA_CFG",
    "FAMILY",
    "hyenadna_nano",
    "hyenadna_nano_derf",
    "hyenadna_nano_ln",
    "hyenadna_small_32k",
    "hyenadna_small_32k_derf",
    "hyenadna_small_32k_ln",
    "hyenadna_tiny_1k",
    "hyenadna_tiny_1k_derf",
    "hyenadna_tiny_1k_ln",
]


#: The HyenaDNA family: next-token prediction, so Hugging Face's "text-generation" pipeline tag (the ``-hf``
#: checkpoints are ``HyenaDNAForCausalLM``). Its foreign layouts: the public checkpoints' (``"hyenadna"``) and that of
#: models trained with gradient checkpointing (``"hyenadna_checkpointed"``).
FAMILY = register_family(ModelFamily(
    name="hyenadna", norm_sites=HYENADNA_SITES, task="derf_zoo.tasks.DNALanguageModeling",
    task_type="text-generation",
    layouts={"hyenadna": HYENADNA_LAYOUT, "hyenadna_checkpointed": HYENADNA_CHECKPOINTED_LAYOUT},
))  # fmt: skip

#: The vocabulary's data config (derf_zoo.data.dna, shared with Caduceus) and this family's card texts, which
#: derf_zoo.hub.card fills: the length is the model's own ``max_seq_len`` (an architecture argument, so the data
#: config records none).
DNA_DATA_CFG = {**DNA_VOCAB_CFG, **dna_card_texts("{model.max_seq_len}", "{model.card_example_length}")}
#: The model card's Input line: token ids.
CARD_INPUT = DNA_DATA_CFG["card_input"]
#: The model card's usage example (one name per line: the docs' API reference resolves each).
CARD_EXAMPLE = DNA_DATA_CFG["card_example"]


#: The public checkpoints' shapes (LongSafari/hyenadna-{tiny-1k,small-32k}-seqlen config.json): max length is
#: the training length + 2.
_SIZES = {
    "tiny_1k": {"d_model": 128, "n_layer": 2, "max_seq_len": 1024 + 2},
    "small_32k": {"d_model": 256, "n_layer": 4, "max_seq_len": 32768 + 2},
    # The demo's CPU-sized model (not a public checkpoint): 256-base windows, width 32, filter MLP width 32. At width 32
    # the reference's embedding std 0.02 caps the tied head's logits near 0.5 nats and alpha 0.5 in the final site
    # lets the residual grow until erf saturates and no gradient passes (issue 18): embedding std 0.32 (x16) and a
    # final-site alpha of 0.1 keep it learning (scripts/probe_dna_saturation.py). The Derf model also needs a head bias
    # at the data's prior (HyenaDNA's head_bias): without it 2 of 5 seeds were still trapped. LayerNorm does not (held
    # out it changes LayerNorm by +0.0013 +- 0.0020 nats per base), so the nano LayerNorm model is the reference's.
    "nano": {"d_model": 32, "n_layer": 2, "max_seq_len": 256 + 2, "mixer": "hyena(order=2, filter_order=32)",
             "embed_init_std": 0.32, "site_alpha": {"final": 0.1}},
}
#: shared/PAPER.md §3.4: every LayerNorm of HyenaDNA becomes Derf with alpha 0.5, shift 0.
_PAPER_NORMS = {"derf": "derf(alpha=0.5, shift=0.0)", "ln": "layernorm"}
#: The nano models' Derf: the paper's alpha 0.5 inside the blocks, 0.1 in the final site (see _SIZES["nano"]).
_NANO_DERF = {"default": "derf(alpha=0.5, shift=0.0)", "final": "derf(alpha=0.1, shift=0.0)"}


def _build(name: str, size: str, pretrained: bool, kwargs: dict[str, Any],
           norm: NormSpec | Mapping[str, NormSpec] = None, **defaults: Any) -> HyenaDNA:  # fmt: skip
    """``defaults``: this entry point's arguments on top of its size's (a release's manifest ``model_args`` and the
    caller's ``kwargs`` override both)."""
    args = {**_SIZES[size], **defaults, **({"norm": norm} if norm is not None else {})}
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
    """HyenaDNA nano with Derf (shift 0; alpha 0.5 in the blocks, 0.1 in the final site) and a head bias, pretrained
    on E. coli."""
    return _build("hyenadna_nano_derf", "nano", pretrained, kwargs, _NANO_DERF, head_bias=True)


@register_model(family="hyenadna", recipe="recipes/hyenadna/hyenadna_nano_ln_ecoli.yaml")
def hyenadna_nano_ln(pretrained: bool = False, **kwargs: Any) -> HyenaDNA:
    """HyenaDNA nano with LayerNorm in every norm site, pretrained on the embedded E. coli."""
    return _build("hyenadna_nano_ln", "nano", pretrained, kwargs, _PAPER_NORMS["ln"])


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}
