"""Foreign weight layouts of the Wav2Vec2 family: Hugging Face transformers' and fairseq's wav2vec 2.0 layouts,
imported and exported through :mod:`derf_zoo.weights` (one rule table each, the reverse derived).

Both upstreams store the codebook as ``(1, G * V, d / G)`` where ours is ``(G, V, d / G)``: the reshape needs the
number of groups G, which no key says, so each layout is built for a G (:func:`transformers_layout`,
:func:`fairseq_layout`; every published wav2vec 2.0 and XLS-R checkpoint has G = 2, the registered layouts'). The
importers read G from the config or the model and use the layout of that G.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from derf_zoo._validate import check_int
from derf_zoo.models.wav2vec2.model import Wav2Vec2
from derf_zoo.weights import Fuse, Ignored, Layout, OursOnly, Rename, Transform, load_layout
from derf_zoo.weights.checkpoint_file import read_weights
from derf_zoo.weights.layout import Rule

__all__ = [
    "FAIRSEQ_LAYOUT",
    "TRANSFORMERS_LAYOUT",
    "fairseq_layout",
    "from_fairseq",
    "from_transformers",
    "to_fairseq",
    "to_transformers",
    "to_transformers_state_dict",
    "transformers_layout",
]

#: Where our weight-normed position conv keeps g and v (torch's ``parametrizations.weight_norm``).
_POS_G, _POS_V = "pos_conv.conv.parametrizations.weight.original0", "pos_conv.conv.parametrizations.weight.original1"


def _codebook(groups: int) -> Transform:
    """Their ``(1, G * V, d)`` codebook <-> our ``(G, V, d)`` one (the same numbers, group-major)."""
    return Transform(f"codebook of {groups} groups", lambda t: t.reshape(groups, -1, t.shape[-1]),
                     lambda t: t.reshape(1, -1, t.shape[-1]))  # fmt: skip


def _transformers_encoder(p: str) -> tuple[Rule, ...]:
    """transformers' ``Wav2Vec2Model`` under the prefix ``p``: ``"wav2vec2."`` inside ``Wav2Vec2ForPreTraining``
    (and the CTC / classification models), ``""`` for a bare ``Wav2Vec2Model``."""
    return (
        Rename("mask_emb", p + "masked_spec_embed"),
        Rename("feature_extractor.conv_layers.{i}.conv.{w}", p + "feature_extractor.conv_layers.{i}.conv.{w}"),
        Rename("feature_extractor.conv_layers.{i}.norm.{w}", p + "feature_extractor.conv_layers.{i}.layer_norm.{w}"),
        Rename("layer_norm.{w}", p + "feature_projection.layer_norm.{w}"),
        Rename("post_extract_proj.{w}", p + "feature_projection.projection.{w}"),
        Rename("pos_conv.conv.bias", p + "encoder.pos_conv_embed.conv.bias"),
        # torch >= 2.1 weight norm (what transformers writes today) first, so exports use it; the older
        # weight_g / weight_v names import too.
        Rename(_POS_G, p + "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
        Rename(_POS_V, p + "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
        Rename(_POS_G, p + "encoder.pos_conv_embed.conv.weight_g"),
        Rename(_POS_V, p + "encoder.pos_conv_embed.conv.weight_v"),
        Rename("encoder_norm.{w}", p + "encoder.layer_norm.{w}"),
        Fuse("backbone.blocks.{i}.mixer.qkv.{w}", (p + "encoder.layers.{i}.attention.q_proj.{w}",
                                                    p + "encoder.layers.{i}.attention.k_proj.{w}",
                                                    p + "encoder.layers.{i}.attention.v_proj.{w}")),
        Rename("backbone.blocks.{i}.mixer.proj.{w}", p + "encoder.layers.{i}.attention.out_proj.{w}"),
        Rename("backbone.blocks.{i}.norm1.{w}", p + "encoder.layers.{i}.layer_norm.{w}"),
        Rename("backbone.blocks.{i}.mlp.fc1.{w}", p + "encoder.layers.{i}.feed_forward.intermediate_dense.{w}"),
        Rename("backbone.blocks.{i}.mlp.fc2.{w}", p + "encoder.layers.{i}.feed_forward.output_dense.{w}"),
        Rename("backbone.blocks.{i}.norm2.{w}", p + "encoder.layers.{i}.final_layer_norm.{w}"),
    )


@cache
def transformers_layout(codevector_groups: int = 2) -> Layout:
    """transformers' ``Wav2Vec2ForPreTraining`` layout for a codebook of ``codevector_groups`` groups.

    Exports write ``Wav2Vec2ForPreTraining``'s keys; imports also take a bare ``Wav2Vec2Model``'s (no
    ``wav2vec2.`` prefix) and the CTC / sequence-classification models' (their task heads, which no
    :class:`Wav2Vec2` has, are dropped, as ``Wav2Vec2Model.from_pretrained`` drops them).
    """
    check_int("codevector_groups", codevector_groups, minimum=1)
    return Layout(f"transformers Wav2Vec2ForPreTraining ({codevector_groups} codebook groups)", (
        *_transformers_encoder("wav2vec2."),
        *_transformers_encoder(""),
        # transformers keeps no mask embedding when its config masks nothing (mask_time_prob 0): ours keeps its own
        OursOnly("mask_emb"),
        Rename("quantizer.codevectors", "quantizer.codevectors", _codebook(codevector_groups)),
        Rename("quantizer.weight_proj.{w}", "quantizer.weight_proj.{w}"),
        OursOnly("quantizer.temperature"),  # transformers passes the Gumbel temperature at each call
        Rename("project_q.{w}", "project_q.{w}"),
        Rename("final_proj.{w}", "project_hid.{w}"),
        Ignored("lm_head.{w}"),  # Wav2Vec2ForCTC
        Ignored("projector.{w}"),  # Wav2Vec2ForSequenceClassification
        Ignored("classifier.{w}"),
    ))  # fmt: skip


#: transformers' layout as the family registers it (``source_format: transformers``): 2 codebook groups.
TRANSFORMERS_LAYOUT = transformers_layout(2)


@cache
def fairseq_layout(codevector_groups: int = 2, extractor_mode: str = "group") -> Layout:
    """fairseq's ``Wav2Vec2Model`` layout for a codebook of ``codevector_groups`` groups.

    fairseq's CNN layers are ``Sequential``s: the conv at ``.0``, the ``GroupNorm`` at ``.2`` (``extractor_mode
    default``, our ``"group"``) or the ``LayerNorm`` at ``.2.1`` (``layer_norm``, our ``"layer"``). Imports take
    either; ``extractor_mode`` says which one exports write.
    """
    check_int("codevector_groups", codevector_groups, minimum=1)
    if extractor_mode not in ("group", "layer"):
        raise ValueError(f"extractor_mode must be 'group' or 'layer', got {extractor_mode!r}.")
    norms = (Rename("feature_extractor.conv_layers.{i}.norm.{w}", "feature_extractor.conv_layers.{i}.2.{w}"),
             Rename("feature_extractor.conv_layers.{i}.norm.{w}", "feature_extractor.conv_layers.{i}.2.1.{w}"))
    return Layout(f"fairseq Wav2Vec2Model ({codevector_groups} codebook groups)", (
        Rename("mask_emb", "mask_emb"),
        Rename("feature_extractor.conv_layers.{i}.conv.{w}", "feature_extractor.conv_layers.{i}.0.{w}"),
        *(norms if extractor_mode == "group" else norms[::-1]),
        Rename("layer_norm.{w}", "layer_norm.{w}"),
        Rename("post_extract_proj.{w}", "post_extract_proj.{w}"),
        Rename("pos_conv.conv.bias", "encoder.pos_conv.0.bias"),
        Rename(_POS_G, "encoder.pos_conv.0.weight_g"),  # fairseq's torch.nn.utils.weight_norm names
        Rename(_POS_V, "encoder.pos_conv.0.weight_v"),
        Rename("encoder_norm.{w}", "encoder.layer_norm.{w}"),
        Fuse("backbone.blocks.{i}.mixer.qkv.{w}", ("encoder.layers.{i}.self_attn.q_proj.{w}",
                                                    "encoder.layers.{i}.self_attn.k_proj.{w}",
                                                    "encoder.layers.{i}.self_attn.v_proj.{w}")),
        Rename("backbone.blocks.{i}.mixer.proj.{w}", "encoder.layers.{i}.self_attn.out_proj.{w}"),
        Rename("backbone.blocks.{i}.norm1.{w}", "encoder.layers.{i}.self_attn_layer_norm.{w}"),
        Rename("backbone.blocks.{i}.mlp.fc1.{w}", "encoder.layers.{i}.fc1.{w}"),
        Rename("backbone.blocks.{i}.mlp.fc2.{w}", "encoder.layers.{i}.fc2.{w}"),
        Rename("backbone.blocks.{i}.norm2.{w}", "encoder.layers.{i}.final_layer_norm.{w}"),
        Rename("quantizer.codevectors", "quantizer.vars", _codebook(codevector_groups)),
        Rename("quantizer.weight_proj.{w}", "quantizer.weight_proj.{w}"),
        OursOnly("quantizer.temperature"),  # fairseq's curr_temp is a plain attribute, not in its state dict
        Rename("project_q.{w}", "project_q.{w}"),
        Rename("final_proj.{w}", "final_proj.{w}"),
    ))  # fmt: skip


#: fairseq's layout as the family registers it (``source_format: fairseq``): 2 codebook groups, and exports with
#: the default (group-norm) CNN; imports take either CNN mode.
FAIRSEQ_LAYOUT = fairseq_layout(2)


def _codevector_groups(model: Wav2Vec2) -> int:
    return model.quantizer.num_groups if model.pretraining else 2  # no codebook: any layout of the family fits


def _extractor_mode(model: Wav2Vec2) -> str:
    return "layer" if model.feature_extractor.conv_layers[-1].norm_kind == "layer" else "group"


# ---- transformers ---------------------------------------------------------------------------------------------


def _args_from_hf_config(config: Any) -> dict[str, Any]:
    if getattr(config, "hidden_act", "gelu") != "gelu" or getattr(config, "feat_extract_activation", "gelu") != "gelu":
        raise ValueError("from_transformers: only GELU activations are supported (wav2vec 2.0's).")
    if getattr(config, "add_adapter", False):
        raise ValueError("from_transformers: adapters (add_adapter=True) are not supported.")
    return {
        "conv_dim": tuple(config.conv_dim), "conv_kernel": tuple(config.conv_kernel),
        "conv_stride": tuple(config.conv_stride), "extractor_mode": config.feat_extract_norm,
        "conv_bias": bool(config.conv_bias), "embed_dim": config.hidden_size, "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads, "ffn_dim": config.intermediate_size, "norm": "layernorm",
        "norm_eps": config.layer_norm_eps, "norm_first": bool(config.do_stable_layer_norm),
        "layer_drop": config.layerdrop, "dropout": config.hidden_dropout,
        "attention_dropout": config.attention_dropout, "activation_dropout": config.activation_dropout,
        "dropout_input": config.feat_proj_dropout, "dropout_features": config.feat_quantizer_dropout,
        "feature_grad_mult": 1.0, "pos_conv_kernel": config.num_conv_pos_embeddings,
        "pos_conv_groups": config.num_conv_pos_embedding_groups, "final_dim": config.proj_codevector_dim,
        "num_codevector_groups": config.num_codevector_groups,
        "num_codevectors": config.num_codevectors_per_group, "codevector_dim": config.codevector_dim,
        "num_negatives": config.num_negatives, "logit_temp": config.contrastive_logits_temperature,
        "mask_prob": config.mask_time_prob, "mask_length": config.mask_time_length,
        "min_masks": config.mask_time_min_masks, "diversity_weight": config.diversity_loss_weight,
        "feature_penalty_weight": 0.0, "feature_projection": True,  # transformers always projects the features
    }  # fmt: skip


def from_transformers(model_or_state_dict: nn.Module | Mapping[str, Tensor] | str | Path, config: Any = None,
                      **overrides: Any) -> Wav2Vec2:  # fmt: skip
    """Import transformers' ``Wav2Vec2ForPreTraining`` (with the head) or ``Wav2Vec2Model`` (encoder only).

    The weights go through :func:`transformers_layout` (the registered ``"transformers"`` layout for 2 codebook
    groups), exactly as ``create_model(..., pretrained=True)`` loads released weights of that layout.

    Args:
        model_or_state_dict: the HF model, or its state dict (then ``config`` is required), or the path of a file
            holding that state dict (``model.safetensors``, ``pytorch_model.bin``), read weights-only
            (:func:`~derf_zoo.weights.checkpoint_file.read_weights`).
        config: the ``Wav2Vec2Config`` (taken from the model when one is given).
        **overrides: model arguments to change (``feature_penalty_weight=10.0``, ``feature_grad_mult=0.1`` to
            continue pretraining the fairseq way; by default the import reproduces HF's loss: weight 0, mult 1).
            Masking comes from the config, whose defaults are transformers' *fine-tuning* ones
            (``mask_time_prob=0.05``): pass ``mask_prob=0.65`` to pretrain with sampled masks.

    Returns:
        A :class:`Wav2Vec2` in evaluation mode with LayerNorm in every slot site and the same outputs.

    Raises:
        ValueError: a state dict without ``config``, a config option this model does not implement, keys that
            are not the layout, or weights missing, unexpected or misshapen (nothing is loaded then).
    """
    if isinstance(model_or_state_dict, (str, Path)):
        model_or_state_dict = read_weights(model_or_state_dict, who="from_transformers")
    if isinstance(model_or_state_dict, nn.Module):
        config = config or model_or_state_dict.config
        sd = model_or_state_dict.state_dict()
    else:
        sd = dict(model_or_state_dict)
    if config is None:
        raise ValueError("from_transformers: pass config= (a Wav2Vec2Config) with a state dict.")
    pretraining = any(k.startswith("quantizer.") for k in sd)
    args = {**_args_from_hf_config(config), "pretraining": pretraining, **overrides}
    model = Wav2Vec2(**args)
    model.model_args = args
    layout = transformers_layout(_codevector_groups(model))
    return load_layout(model, sd, layout, source="transformers Wav2Vec2 weights", fresh_norms=True).eval()


def _check_hf_compatible(model: Wav2Vec2) -> None:
    problems = [f"the {site!r} site is {spec}" for site, spec in model.norm_specs.items()
                if not spec.startswith("layernorm")]  # fmt: skip
    if not isinstance(model.post_extract_proj, nn.Linear):
        problems.append("it has no feature projection (feature_projection=True builds one)")
    if problems:
        raise ValueError(f"to_transformers: HF's Wav2Vec2 has LayerNorm in every site and always projects the CNN "
                         f"features, but {'; '.join(problems)}. Use to_fairseq or save_pretrained instead.")


def to_transformers_state_dict(model: Wav2Vec2) -> dict[str, Tensor]:
    """Our weights in transformers' ``Wav2Vec2ForPreTraining`` layout (encoder keys under ``wav2vec2.``; an
    encoder-only model gives only those)."""
    _check_hf_compatible(model)
    layout = transformers_layout(_codevector_groups(model))
    return {k: v.contiguous() for k, v in layout.to_theirs(model.state_dict()).items()}


def _hf_config(model: Wav2Vec2) -> Any:
    """The ``Wav2Vec2Config`` of this model's architecture (and its dropouts, masking and loss settings)."""
    from transformers import Wav2Vec2Config

    cnn = model.feature_extractor
    block = model.backbone.blocks[0]
    args: dict[str, Any] = dict(
        conv_dim=[layer.conv.out_channels for layer in cnn.conv_layers], conv_kernel=list(cnn.kernels),
        conv_stride=list(cnn.strides), feat_extract_norm=_extractor_mode(model),
        conv_bias=cnn.conv_layers[0].conv.bias is not None, hidden_size=model.embed_dim,
        num_hidden_layers=len(model.backbone.blocks), num_attention_heads=block.mixer.num_heads,
        intermediate_size=block.mlp.fc1.out_features, hidden_act="gelu", feat_extract_activation="gelu",
        layer_norm_eps=model.encoder_norm.eps, do_stable_layer_norm=model.norm_first,
        layerdrop=model.backbone.layer_drop, hidden_dropout=model.encoder_dropout.p,
        attention_dropout=block.mixer.attn_drop, activation_dropout=block.mlp.drop1.p,
        feat_proj_dropout=model.dropout_input.p, feat_quantizer_dropout=model.dropout_features.p,
        num_conv_pos_embeddings=model.pos_conv.kernel, num_conv_pos_embedding_groups=model.pos_conv.conv.groups,
        num_negatives=model.num_negatives, contrastive_logits_temperature=model.logit_temp,
        mask_time_prob=model.mask_prob, mask_time_length=model.mask_length, mask_time_min_masks=model.min_masks,
        diversity_loss_weight=model.diversity_weight,
    )  # fmt: skip
    if model.pretraining:
        args.update(num_codevector_groups=model.quantizer.num_groups,
                    num_codevectors_per_group=model.quantizer.num_vars,
                    codevector_dim=model.project_q.in_features, proj_codevector_dim=model.final_proj.out_features)
    return Wav2Vec2Config(**args)


def to_transformers(model: Wav2Vec2) -> nn.Module:
    """A transformers ``Wav2Vec2ForPreTraining`` (``Wav2Vec2Model`` for an encoder-only model) holding this model's
    weights, loaded with ``strict=True``, in the same train/eval mode and at the same Gumbel temperature.

    HF has no feature penalty or CNN gradient multiplier (training-only settings; its loss is ours with
    ``feature_penalty_weight=0``). A model whose ``mask_prob`` is 0 exports no mask embedding: HF keeps none then.

    Raises:
        ValueError: a model HF's Wav2Vec2 cannot hold (a norm other than LayerNorm, no feature projection).
    """
    from transformers import Wav2Vec2ForPreTraining, Wav2Vec2Model

    sd = to_transformers_state_dict(model)
    config = _hf_config(model)
    if model.pretraining:
        hf = target = Wav2Vec2ForPreTraining(config)
        hf.set_gumbel_temperature(float(model.quantizer.temperature))
    else:
        hf = Wav2Vec2Model(config)
        target = nn.ModuleDict({"wav2vec2": hf})  # the encoder's keys sit under wav2vec2. in the layout
    if config.mask_time_prob == 0 and config.mask_feature_prob == 0:
        sd.pop("wav2vec2.masked_spec_embed")
    target.load_state_dict(sd, strict=True)
    return hf.train(model.training)


# ---- fairseq --------------------------------------------------------------------------------------------------


def from_fairseq(state_dict: Mapping[str, Tensor] | str | Path, **model_args: Any) -> Wav2Vec2:
    """Import a fairseq ``Wav2Vec2Model`` state dict into a :class:`Wav2Vec2` built from ``model_args`` (e.g. those
    of ``wav2vec2_base``: the config is not in a state dict), through :func:`fairseq_layout` (the registered
    ``"fairseq"`` layout for 2 codebook groups).

    ``state_dict`` may be the path of a file: a state dict, or a fairseq checkpoint (its ``model``), read
    weights-only with ``argparse.Namespace`` the one class allowed
    (:func:`~derf_zoo.weights.checkpoint_file.read_weights`): code is never unpickled, so a checkpoint whose
    ``cfg`` is an omegaconf object is refused (extract its ``model`` in a trusted environment).

    Raises:
        ValueError: keys that are not the layout, or weights missing, unexpected or misshapen (nothing is loaded).
    """
    if isinstance(state_dict, (str, Path)):
        state_dict = read_weights(state_dict, who="from_fairseq")
    model = Wav2Vec2(**model_args)
    layout = fairseq_layout(_codevector_groups(model))
    return load_layout(model, state_dict, layout, source="fairseq wav2vec 2.0 state dict", fresh_norms=True).eval()


def to_fairseq(model: Wav2Vec2) -> dict[str, Tensor]:
    """Our state dict in fairseq's ``Wav2Vec2Model`` layout (the inverse of :func:`from_fairseq`): the CNN norms
    where the model's extractor mode puts them, the position conv's ``weight_g``/``weight_v``, the codebook as
    ``quantizer.vars``, no temperature."""
    return fairseq_layout(_codevector_groups(model), _extractor_mode(model)).to_theirs(model.state_dict())
