"""Foreign weight layouts of the Wav2Vec2 family: Hugging Face transformers' and fairseq's wav2vec 2.0 layouts,
imported and exported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.hub.state_dict import load_into
from derf_zoo.models.wav2vec2.model import Wav2Vec2

__all__ = ["fairseq_to_zoo_key", "from_fairseq", "from_transformers", "hf_to_zoo_key", "to_fairseq"]


def hf_to_zoo_key(key: str) -> str:
    """Map one transformers ``Wav2Vec2ForPreTraining`` / ``Wav2Vec2Model`` key to ours.

    The fused attention projection (``q/k/v_proj`` -> ``qkv``) cannot be a key rename; :func:`from_transformers`
    concatenates those, and this map names them ``...mixer.q_proj.weight`` for it to find.
    """
    key = key.removeprefix("wav2vec2.")
    rules = (
        ("feature_extractor.conv_layers.", "feature_extractor.conv_layers."),
        ("feature_projection.layer_norm.", "layer_norm."),
        ("feature_projection.projection.", "post_extract_proj."),
        ("masked_spec_embed", "mask_emb"),
        ("encoder.pos_conv_embed.conv.", "pos_conv.conv."),
        ("encoder.layer_norm.", "encoder_norm."),
        ("quantizer.", "quantizer."),
        ("project_hid.", "final_proj."),
        ("project_q.", "project_q."),
    )
    for old, new in rules:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    else:
        if key.startswith("encoder.layers."):
            _, _, i, rest = key.split(".", 3)
            rest = (rest.replace("attention.out_proj.", "mixer.proj.").replace("attention.", "mixer.")
                    .replace("feed_forward.intermediate_dense.", "mlp.fc1.")
                    .replace("feed_forward.output_dense.", "mlp.fc2.")
                    .replace("final_layer_norm.", "norm2.").replace("layer_norm.", "norm1."))  # fmt: skip
            key = f"backbone.blocks.{i}.{rest}"
    key = key.replace(".layer_norm.", ".norm.")  # the CNN's per-layer norms
    key = key.replace("conv.weight_g", "conv.parametrizations.weight.original0")
    key = key.replace("conv.weight_v", "conv.parametrizations.weight.original1")
    return key


def fairseq_to_zoo_key(key: str) -> str:
    """Map one fairseq ``Wav2Vec2Model`` state-dict key to ours (attention is fused like transformers')."""
    rules = (
        ("encoder.pos_conv.0.", "pos_conv.conv."),
        ("encoder.layer_norm.", "encoder_norm."),
        ("quantizer.vars", "quantizer.codevectors"),
    )
    for old, new in rules:
        if key.startswith(old):
            key = new + key[len(old):]
            break
    else:
        if key.startswith("encoder.layers."):
            _, _, i, rest = key.split(".", 3)
            rest = (rest.replace("self_attn.out_proj.", "mixer.proj.").replace("self_attn.", "mixer.")
                    .replace("self_attn_layer_norm.", "norm1.").replace("final_layer_norm.", "norm2.")
                    .replace("fc1.", "mlp.fc1.").replace("fc2.", "mlp.fc2."))  # fmt: skip
            key = f"backbone.blocks.{i}.{rest}"
        elif key.startswith("feature_extractor.conv_layers."):
            # fairseq: conv_layers.{i}.0 = conv, .2 = GroupNorm (default mode) or .2.1 = LayerNorm (layer_norm mode)
            _, _, i, rest = key.split(".", 3)
            if rest.startswith("0."):
                rest = "conv." + rest[2:]
            elif rest.startswith("2."):
                rest = "norm." + rest.split(".")[-1]
            key = f"feature_extractor.conv_layers.{i}.{rest}"
    key = key.replace("conv.weight_g", "conv.parametrizations.weight.original0")
    key = key.replace("conv.weight_v", "conv.parametrizations.weight.original1")
    return key




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


def _fuse_qkv(sd: dict[str, Tensor], prefix: str = "backbone.blocks.") -> dict[str, Tensor]:
    """Concatenate separate ``mixer.{q,k,v}_proj`` weights into our fused ``mixer.qkv``."""
    out = {}
    for key, value in sd.items():
        if ".mixer.q_proj." in key or ".mixer.k_proj." in key or ".mixer.v_proj." in key:
            if ".mixer.q_proj." in key:
                kind = key.rsplit(".", 1)[1]
                base = key.split(".mixer.q_proj.")[0] + ".mixer."
                out[f"{base}qkv.{kind}"] = torch.cat([sd[f"{base}{p}_proj.{kind}"] for p in "qkv"], dim=0)
            continue
        out[key] = value
    return out


def _load_mapped(model: Wav2Vec2, sd: Mapping[str, Tensor], key_map, source: str) -> Wav2Vec2:
    mapped = _fuse_qkv({key_map(k): v for k, v in sd.items()})
    if model.pretraining:  # transformers keeps the temperature outside the state dict
        mapped.setdefault("quantizer.temperature", model.quantizer.temperature.clone())
    if "quantizer.codevectors" in mapped and model.pretraining:
        mapped["quantizer.codevectors"] = mapped["quantizer.codevectors"].reshape(model.quantizer.codevectors.shape)
    if "mask_emb" not in mapped:  # transformers drops the mask embedding when its config masks nothing
        mapped["mask_emb"] = model.mask_emb.detach().clone()
    load_into(model, mapped, source=source)
    return model


def from_transformers(model_or_state_dict: nn.Module | Mapping[str, Tensor], config: Any = None,
                      **overrides: Any) -> Wav2Vec2:  # fmt: skip
    """Import transformers' ``Wav2Vec2ForPreTraining`` (with the head) or ``Wav2Vec2Model`` (encoder only).

    Args:
        model_or_state_dict: the HF model, or its state dict (then ``config`` is required).
        config: the ``Wav2Vec2Config`` (taken from the model when one is given).
        **overrides: model arguments to change (``feature_penalty_weight=10.0``, ``feature_grad_mult=0.1`` to
            continue pretraining the fairseq way; by default the import reproduces HF's loss: weight 0, mult 1).
            Masking comes from the config, whose defaults are transformers' *fine-tuning* ones
            (``mask_time_prob=0.05``): pass ``mask_prob=0.65`` to pretrain with sampled masks.

    Returns:
        A :class:`Wav2Vec2` in evaluation mode with LayerNorm in every slot site and the same outputs.
    """
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
    sd = {k: v for k, v in sd.items() if not k.startswith(("lm_head.", "projector.", "classifier."))}
    return _load_mapped(model, sd, hf_to_zoo_key, "transformers Wav2Vec2 weights").eval()


def from_fairseq(state_dict: Mapping[str, Tensor], **model_args: Any) -> Wav2Vec2:
    """Import a fairseq ``Wav2Vec2Model`` state dict (already extracted; fairseq checkpoints are pickles and are
    never unpickled here) into a :class:`Wav2Vec2` built from ``model_args`` (e.g. those of ``wav2vec2_base``:
    the config is not in a state dict)."""
    model = Wav2Vec2(**model_args)
    return _load_mapped(model, state_dict, fairseq_to_zoo_key, "fairseq wav2vec 2.0 state dict").eval()


def to_fairseq(model: Wav2Vec2) -> dict[str, Tensor]:
    """Our state dict in fairseq's ``Wav2Vec2Model`` layout (the inverse of :func:`from_fairseq`)."""
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "quantizer.temperature":
            continue
        if key.startswith("backbone.blocks."):
            _, _, i, rest = key.split(".", 3)
            if rest.startswith("mixer.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"encoder.layers.{i}.self_attn.{name}_proj.{kind}"] = part
                continue
            rest = (rest.replace("mixer.proj.", "self_attn.out_proj.").replace("norm1.", "self_attn_layer_norm.")
                    .replace("norm2.", "final_layer_norm.").replace("mlp.fc1.", "fc1.").replace("mlp.fc2.", "fc2."))
            out[f"encoder.layers.{i}.{rest}"] = value
        elif key.startswith("feature_extractor.conv_layers."):
            _, _, i, rest = key.split(".", 3)
            layer = model.feature_extractor.conv_layers[int(i)]
            if rest.startswith("conv."):
                out[f"feature_extractor.conv_layers.{i}.0.{rest[5:]}"] = value
            else:
                site = "2" if layer.norm_kind == "group" else "2.1"
                out[f"feature_extractor.conv_layers.{i}.{site}.{rest.split('.')[-1]}"] = value
        elif key.startswith("pos_conv.conv."):
            rest = key[len("pos_conv.conv."):]
            rest = rest.replace("parametrizations.weight.original0", "weight_g")
            out["encoder.pos_conv.0." + rest.replace("parametrizations.weight.original1", "weight_v")] = value
        elif key.startswith("encoder_norm."):
            out["encoder.layer_norm." + key[len("encoder_norm."):]] = value
        elif key == "quantizer.codevectors":
            out["quantizer.vars"] = value.reshape(1, -1, value.shape[-1])
        else:
            out[key] = value
    return out
