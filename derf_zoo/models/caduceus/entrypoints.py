"""Registered entry points of the caduceus family: the Caduceus architectures (Ph/PS-1k, the paper's Derf/RMSNorm
settings, the nano), its data configs and its registry record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from derf_zoo.data.dna import DNA_VOCAB_CFG, dna_card_texts
from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.caduceus.layouts import CADUCEUS_LAYOUTS
from derf_zoo.models.caduceus.model import NORM_SITES, Caduceus
from derf_zoo.norms.registry import NormSpec

__all__ = [
    "CARD_EXAMPLE",
    "CARD_INPUT",
    "DNA_DATA_CFG",
    "FAMILY",
    "caduceus_nano",
    "caduceus_nano_derf",
    "caduceus_nano_rmsnorm",
    "caduceus_ph_1k",
    "caduceus_ph_1k_derf",
    "caduceus_ph_1k_rmsnorm",
    "caduceus_ps_1k",
    "caduceus_ps_1k_derf",
    "caduceus_ps_1k_rmsnorm",
]


#: The Caduceus family: masked DNA language models. Its foreign layouts are CaduceusForMaskedLM's: ``"caduceus"``
#: (the public checkpoints), ``"caduceus_fused_ps"`` (Caduceus-PS saved with fused_add_norm) and their
#: ``"caduceus_untied*"`` forms (bidirectional_weight_tie=False).
FAMILY = register_family(ModelFamily(
    name="caduceus", norm_sites=NORM_SITES, task="derf_zoo.tasks.DNALanguageModeling", task_type="fill-mask",
    layouts=CADUCEUS_LAYOUTS,
))  # fmt: skip



#: The 1k-context GenomicBenchmarks models behind the papers' numbers (``caduceus-{ph,ps}_seqlen-1k_d_model-118_
#: n_layer-4_lr-8e-3``): d_model 118 (per half for PS), 4 layers, d_state 16, expand 2, vocab 12 -> 16.
_1K = {"d_model": 118, "n_layer": 4, "d_state": 16, "d_conv": 4, "expand": 2}
#: The vocabulary's data config (derf_zoo.data.dna, shared with HyenaDNA), this family's card texts and the one
#: true difference: a Mamba has no maximum length (HyenaDNA's is its max_seq_len argument), so the 1k models'
#: training window, 1024 bases, is recorded as the input size (the card's length).
DNA_DATA_CFG = {**DNA_VOCAB_CFG, "input_size": (1024,), **dna_card_texts("{input_size[0]}", "256")}
#: The model card's Input line: token ids, not an image.
CARD_INPUT = DNA_DATA_CFG["card_input"]
#: The model card's usage example (one name per line: the docs' API reference resolves each).
CARD_EXAMPLE = DNA_DATA_CFG["card_example"]

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
#: final-site alpha of 0.1 keep it learning (scripts/probe_dna_saturation.py); a head bias at the data's prior
#: (Caduceus's head_bias) lowered the held-out loss of both norms by 0.02-0.04 nats per base.
_NANO = {"d_model": 16, "n_layer": 2, "embed_init_std": 0.32, "site_alpha": {"final": 0.1}, "head_bias": True}
#: The nano model's Derf: the paper's alpha 0.5 before each mixer, 0.1 in the final site.
_NANO_DERF = {"attn": "derf(alpha=0.5, shift=0.0)", "final": "derf(alpha=0.1, shift=0.0)"}


@register_model(family="caduceus")
def caduceus_nano(pretrained: bool = False, **kwargs: Any) -> Caduceus:
    """Caduceus-Ph nano (d_model 16, 2 layers), the demo's size; any ``norm=`` (default RMSNorm; a point-wise norm
    without its own alpha gets 0.1 in the final site; embedding std 0.32; a head bias)."""
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
