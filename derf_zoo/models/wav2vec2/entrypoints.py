"""Registered entry points of the wav2vec2 family: the wav2vec 2.0 architectures (base, large, the paper's Derf/DyT/LN
settings, the speech-demo tiny), its data configs and its registry record."""

from __future__ import annotations

from typing import Any

from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.wav2vec2.layouts import FAIRSEQ_LAYOUT, TRANSFORMERS_LAYOUT
from derf_zoo.models.wav2vec2.model import NORM_SITES, Wav2Vec2

__all__ = [
    "AUDIO_DATA_CFG",
    "FAMILY",
    "wav2vec2_base",
    "wav2vec2_base_derf",
    "wav2vec2_base_dyt",
    "wav2vec2_base_ln",
    "wav2vec2_large",
    "wav2vec2_large_derf",
    "wav2vec2_large_dyt",
    "wav2vec2_large_ln",
    "wav2vec2_tiny",
    "wav2vec2_tiny_derf",
    "wav2vec2_tiny_ln",
]


# One second of 16 kHz audio per example. The model takes (batch, samples): no channel axis, so the model card's usage
# line, torch.randn(1, *input_size), builds a valid input; its Input line is the family's (card_input).
AUDIO_DATA_CFG = {"sample_rate": 16000, "input_size": (16000,),
                  "card_input": "mono waveform (batch, samples) at {cfg[sample_rate]} Hz, float in [-1, 1]"}


#: The wav2vec 2.0 family; SpeechPretraining trains and evaluates it (validation loss). Released weights in
#: transformers' Wav2Vec2ForPreTraining or fairseq's Wav2Vec2Model layout load through their layouts.
FAMILY = register_family(ModelFamily(
    name="wav2vec2", norm_sites=NORM_SITES, task="derf_zoo.tasks.SpeechPretraining",
    task_type="feature-extraction", layouts={"transformers": TRANSFORMERS_LAYOUT, "fairseq": FAIRSEQ_LAYOUT},
))  # fmt: skip



_BASE = {"extractor_mode": "group", "embed_dim": 768, "depth": 12, "num_heads": 12, "ffn_dim": 3072,
         "final_dim": 256, "layer_drop": 0.05, "dropout": 0.1, "attention_dropout": 0.1, "norm_first": False,
         "latent_temp": (2.0, 0.5, 0.999995)}  # fmt: skip
# fairseq's wav2vec2_large_librivox / the Derf paper's Large: layer-norm CNN with bias, pre-norm, final_dim 768.
_LARGE = {"extractor_mode": "layer", "conv_bias": True, "embed_dim": 1024, "depth": 24, "num_heads": 16,
          "ffn_dim": 4096, "final_dim": 768, "layer_drop": 0.2, "dropout": 0.1, "attention_dropout": 0.1,
          "norm_first": True, "latent_temp": (2.0, 0.1, 0.999995)}  # fmt: skip
# The demo's model: 20 ms frames as Base (same strides) from a narrow CNN, 2 blocks of width 96.
_TINY = {"conv_dim": (64,) * 7, "extractor_mode": "group", "embed_dim": 96, "depth": 2, "num_heads": 4,
         "ffn_dim": 192, "final_dim": 64, "num_codevectors": 32, "num_negatives": 20, "pos_conv_kernel": 32,
         "pos_conv_groups": 4, "layer_drop": 0.0, "norm_first": True}  # fmt: skip


def _build(name: str, args: dict[str, Any], pretrained: bool, kwargs: dict[str, Any]) -> Wav2Vec2:
    return build_model(Wav2Vec2, name, pretrained=pretrained, model_args=args, data_cfg=AUDIO_DATA_CFG, **kwargs)


@register_model(family="wav2vec2")
def wav2vec2_base(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base as fairseq's ``wav2vec2_base_librispeech``: group-norm CNN, post-norm blocks; any ``norm=``."""
    return _build("wav2vec2_base", dict(_BASE), pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_large(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large: layer-norm CNN, pre-norm blocks, final_dim 768; any ``norm=``."""
    return _build("wav2vec2_large", dict(_LARGE), pretrained, kwargs)


def _paper(name: str, size: str, norm: str, pretrained: bool, kwargs: dict[str, Any]) -> Wav2Vec2:
    """The Derf paper's rows (§3.3): fairseq's config with ``layer_norm_first: true`` for Base too, the norm in
    every slot site (Derf and DyT with alpha 0.5). The official Large yaml (zlab-princeton/Derf) sets no
    ``extractor_mode`` or ``conv_bias``, so its CNN is fairseq's default, Base's group-norm CNN without conv bias,
    not the LV-60 layer-norm CNN that ``wav2vec2_large`` builds."""
    args = {**(_BASE if size == "base" else _LARGE), "norm_first": True, "norm": norm}
    if size == "large":
        args.update(extractor_mode="group", conv_bias=False)
    return _build(name, args, pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_derf_librispeech.yaml",
                conversion="recipes/wav2vec2/wav2vec2_base_derf_from_hf_librispeech.yaml")
def wav2vec2_base_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, Derf (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_base_derf", "base", "derf", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_dyt_librispeech.yaml")
def wav2vec2_base_dyt(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, DyT (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_base_dyt", "base", "dyt", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_base_ln_librispeech.yaml")
def wav2vec2_base_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Base, pre-norm, LayerNorm in every slot site: the paper's row."""
    return _paper("wav2vec2_base_ln", "base", "layernorm", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_derf_librispeech.yaml")
def wav2vec2_large_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, Derf (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_large_derf", "large", "derf", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_dyt_librispeech.yaml")
def wav2vec2_large_dyt(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, DyT (alpha 0.5) in every slot site: the paper's row."""
    return _paper("wav2vec2_large_dyt", "large", "dyt", pretrained, kwargs)


@register_model(family="wav2vec2", recipe="recipes/wav2vec2/wav2vec2_large_ln_librispeech.yaml")
def wav2vec2_large_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """wav2vec 2.0 Large, pre-norm, LayerNorm in every slot site: the paper's row."""
    return _paper("wav2vec2_large_ln", "large", "layernorm", pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """The demo's wav2vec 2.0 (~0.3M parameters): Base's 20 ms frames from a 64-channel CNN, 2 pre-norm blocks of
    width 96, 2 x 32 codevectors, 20 negatives; any ``norm=``. Pretrains in well under a minute on 2 CPU cores on
    ~25 s of speech."""
    return _build("wav2vec2_tiny", dict(_TINY), pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny_derf(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """:func:`wav2vec2_tiny` with Derf (alpha 0.5) in every slot site: the demo's model."""
    return _build("wav2vec2_tiny_derf", {**_TINY, "norm": "derf"}, pretrained, kwargs)


@register_model(family="wav2vec2")
def wav2vec2_tiny_ln(pretrained: bool = False, **kwargs: Any) -> Wav2Vec2:
    """:func:`wav2vec2_tiny` with LayerNorm in every slot site: the demo's baseline."""
    return _build("wav2vec2_tiny_ln", {**_TINY, "norm": "layernorm"}, pretrained, kwargs)


default_cfgs: dict[str, dict] = {}
