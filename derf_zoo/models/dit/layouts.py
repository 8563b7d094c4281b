"""Foreign weight layouts of the DiT family: the official facebookresearch/DiT layout and diffusers'
DiTTransformer2DModel, imported and exported."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.hub.state_dict import load_into
from derf_zoo.models.dit.model import DiT

__all__ = ["from_diffusers", "from_official", "official_to_zoo_key", "to_official", "zoo_to_official_key"]


_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.*)$")


def official_to_zoo_key(key: str) -> str:
    """Map a facebookresearch/DiT (or zlab-princeton/Derf DiT) state-dict key to ours."""
    m = _BLOCK_RE.match(key)
    if m:
        i, rest = m.groups()
        rest = rest.replace("attn.", "mixer.", 1) if rest.startswith("attn.") else rest
        rest = rest.replace("adaLN_modulation.1.", "modulation.linear.", 1)
        return f"backbone.blocks.{i}.{rest}"
    return key.replace("final_layer.adaLN_modulation.1.", "final_layer.modulation.linear.", 1)


def zoo_to_official_key(key: str) -> str:
    """The inverse of :func:`official_to_zoo_key`."""
    if key.startswith("backbone.blocks."):
        i, rest = key[len("backbone.blocks.") :].split(".", 1)
        rest = rest.replace("mixer.", "attn.", 1) if rest.startswith("mixer.") else rest
        rest = rest.replace("modulation.linear.", "adaLN_modulation.1.", 1)
        return f"blocks.{i}.{rest}"
    return key.replace("final_layer.modulation.linear.", "final_layer.adaLN_modulation.1.", 1)



_OFFICIAL_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}  # DiT-S/B/L/XL


def _norm_from_keys(sd: Mapping[str, Tensor], prefix: str) -> str:
    if f"{prefix}.alpha" in sd:
        return "derf" if f"{prefix}.shift" in sd else "dyt"
    return "layernorm"


def _args_from_official(sd: Mapping[str, Tensor], model_args: Mapping[str, Any]) -> dict[str, Any]:
    needed = ("x_embedder.proj.weight", "pos_embed", "y_embedder.embedding_table.weight", "final_layer.linear.weight",
              "blocks.0.attn.qkv.weight")  # fmt: skip
    missing = [k for k in needed if k not in sd]
    if missing:
        raise ValueError(f"from_official: this does not look like an official DiT state dict; missing {missing}.")
    proj = sd["x_embedder.proj.weight"]
    hidden, in_channels, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    grid = math.isqrt(sd["pos_embed"].shape[1])
    out = sd["final_layer.linear.weight"].shape[0] // (patch * patch)
    if out not in (in_channels, 2 * in_channels):
        raise ValueError(f"from_official: the output layer has {out} channels per pixel for {in_channels} input "
                         "channels; DiT predicts C (learn_sigma=False) or 2C (learn_sigma=True).")  # fmt: skip
    dropout = model_args.get("class_dropout_prob", 0.1)
    rows = sd["y_embedder.embedding_table.weight"].shape[0]
    heads = model_args.get("num_heads", _OFFICIAL_HEADS.get(hidden))
    if heads is None:
        raise ValueError(f"from_official: width {hidden} is no standard DiT size, so the number of heads cannot be "
                         "read from the weights; pass num_heads=...")  # fmt: skip
    norms = {"attn": _norm_from_keys(sd, "blocks.0.norm1"), "mlp": _norm_from_keys(sd, "blocks.0.norm2"),
             "final": _norm_from_keys(sd, "final_layer.norm_final")}  # fmt: skip
    return {
        "input_size": grid * patch,
        "patch_size": patch,
        "in_channels": in_channels,
        "hidden_size": hidden,
        "depth": 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK_RE.match(k))),
        "num_heads": heads,
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        "class_dropout_prob": dropout,
        "num_classes": rows - int(dropout > 0),  # the null class is the last row
        "learn_sigma": out == 2 * in_channels,
        "norm": norms["attn"] if len(set(norms.values())) == 1 else norms,
    }


def from_official(state_dict: nn.Module | Mapping[str, Tensor], **model_args: Any) -> DiT:
    """Build a :class:`DiT` holding an official DiT state dict (facebookresearch/DiT or zlab-princeton/Derf DiT),
    or the official ``DiT`` module itself (its ``state_dict()``; the result keeps its train/eval mode).

    Shapes, depth, ``learn_sigma`` and the norm (LayerNorm, or Derf/DyT from ``alpha``/``shift`` keys) are read
    from the weights; ``num_heads`` defaults to the standard size's; the null class is assumed (pass
    ``class_dropout_prob=0`` for a table without it). ``model_args`` override anything else
    (``norm="derf(alpha=1.0)"``, ...).

    Raises:
        ValueError: not an official DiT state dict, or a weight is missing, unexpected or misshapen (nothing
            is loaded then).
    """
    module = state_dict if isinstance(state_dict, nn.Module) else None
    sd = dict(module.state_dict() if module is not None else state_dict)
    args = {**_args_from_official(sd, model_args), **model_args}
    model = DiT(**args)
    model.model_args = args
    load_into(model, sd, source="from_official: the official DiT state dict", key_map=official_to_zoo_key)
    if module is not None:
        model.train(module.training)
    return model


def to_official(model: DiT) -> dict[str, Tensor]:
    """``model``'s weights in the official DiT layout (``blocks.N.attn.qkv``, ``blocks.N.adaLN_modulation.1``,
    ``final_layer.adaLN_modulation.1``, ...), ready for the official ``DiT.load_state_dict``."""
    return {zoo_to_official_key(k): v for k, v in model.state_dict().items()}



_DIFFUSERS_EMBED = re.compile(r"^transformer_blocks\.(\d+)\.norm1\.emb\.(.*)$")


def _diffusers_to_zoo(sd: Mapping[str, Tensor], depth: int) -> dict[str, Tensor]:
    """Rename a ``DiTTransformer2DModel`` state dict to ours; the per-block embedders must agree."""
    out: dict[str, Tensor] = {}
    embedders: dict[str, dict[int, Tensor]] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    rename = {
        "norm1.linear.": "modulation.linear.",
        "attn1.to_out.0.": "mixer.proj.",
        "ff.net.0.proj.": "mlp.fc1.",
        "ff.net.2.": "mlp.fc2.",
    }
    for key, value in sd.items():
        m = _DIFFUSERS_EMBED.match(key)
        if m:
            embedders.setdefault(m.group(2), {})[int(m.group(1))] = value
            continue
        if key.startswith("pos_embed.proj."):
            out["x_embedder.proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("proj_out_1."):
            out["final_layer.modulation.linear." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("proj_out_2."):
            out["final_layer.linear." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("transformer_blocks."):
            _, i, rest = key.split(".", 2)
            qm = re.match(r"attn1\.to_([qkv])\.(weight|bias)$", rest)
            if qm:
                qkv.setdefault((int(i), qm.group(2)), {})[qm.group(1)] = value
                continue
            for old, new in rename.items():
                if rest.startswith(old):
                    out[f"backbone.blocks.{i}.{new}{rest[len(old):]}"] = value
                    break
            else:
                out[key] = value  # unknown: load_into names it as unexpected
        else:
            out[key] = value
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            lacking = sorted({"q", "k", "v"} - set(parts))
            raise ValueError(f"from_diffusers: block {i} lacks the attention {kind} of {lacking}.")
        out[f"backbone.blocks.{i}.mixer.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    names = {
        "timestep_embedder.linear_1.weight": "t_embedder.mlp.0.weight",
        "timestep_embedder.linear_1.bias": "t_embedder.mlp.0.bias",
        "timestep_embedder.linear_2.weight": "t_embedder.mlp.2.weight",
        "timestep_embedder.linear_2.bias": "t_embedder.mlp.2.bias",
        "class_embedder.embedding_table.weight": "y_embedder.embedding_table.weight",
    }
    for name, per_block in embedders.items():
        first = per_block.get(0)
        if first is None or len(per_block) != depth:
            raise ValueError(f"from_diffusers: the embedder weight {name!r} is not in every block.")
        differ = [i for i, v in sorted(per_block.items()) if v.shape != first.shape or not torch.equal(v, first)]
        if differ:
            raise ValueError(
                f"from_diffusers: diffusers' DiT keeps a timestep/label embedder in every block; this model's "
                f"{name!r} differs between block 0 and block(s) {differ[:8]}. derf_zoo's DiT (like the official "
                "one) has one embedder shared by all blocks, so these weights cannot be imported exactly. (A "
                "DiTTransformer2DModel converted from the official weights has identical copies; one trained in "
                "diffusers may not.)"
            )
        out[names.get(name, "t_embedder." + name)] = first
    return out


def from_diffusers(source: nn.Module | Mapping[str, Tensor], config: Mapping[str, Any] | None = None,
                   **model_args: Any) -> DiT:  # fmt: skip
    """Import a ``diffusers.DiTTransformer2DModel`` (the model, or its state dict plus its ``config``).

    The result computes what the diffusers model computes: its timestep sinusoid divides the frequencies by
    ``half - 1`` instead of the official ``half`` (``downscale_freq_shift=1``), which the imported model keeps as
    ``timestep_freq_shift=1``; its pre-MLP norm takes ``config.norm_eps`` (1e-5 by default) while the pre-
    attention and final norms use 1e-6, which the per-site norm spec keeps. diffusers repeats the timestep and
    label embedders in every block; they are imported once and must be identical in every block.

    Raises:
        ValueError: the config is no DiT (``norm_type`` other than ``ada_norm_zero``, affine norms, another
            activation), the per-block embedders differ, or a weight does not fit.
    """
    if isinstance(source, nn.Module):
        config, sd = dict(source.config), source.state_dict()
    else:
        if config is None:
            raise ValueError("from_diffusers: pass the model's config with a state dict (model.config).")
        config, sd = dict(config), dict(source)
    problems = []
    if config.get("norm_type", "ada_norm_zero") != "ada_norm_zero":
        problems.append(f"norm_type={config['norm_type']!r} (DiT uses 'ada_norm_zero')")
    if config.get("norm_elementwise_affine", False):
        problems.append("norm_elementwise_affine=True (DiT's norms are affine-free)")
    if config.get("activation_fn", "gelu-approximate") != "gelu-approximate":
        problems.append(f"activation_fn={config['activation_fn']!r} (DiT uses 'gelu-approximate')")
    if not config.get("attention_bias", True):
        problems.append("attention_bias=False (DiT's attention has biases)")
    if problems:
        raise ValueError("from_diffusers: cannot import this DiTTransformer2DModel: " + "; ".join(problems) + ".")
    heads, head_dim = config.get("num_attention_heads", 16), config.get("attention_head_dim", 72)
    in_channels = config.get("in_channels", 4)
    out_channels = config.get("out_channels") or in_channels
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"from_diffusers: out_channels {out_channels} for in_channels {in_channels}; DiT predicts C "
                         "or 2C.")  # fmt: skip
    depth = config.get("num_layers", 28)
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"transformer_blocks\.(\d+)\.", k))}
    if blocks != set(range(depth)):
        held = f"{len(blocks)} transformer blocks" + (f" (transformer_blocks.{min(blocks)}-{max(blocks)})" if blocks
                                                       else "")  # fmt: skip
        raise ValueError(f"from_diffusers: the config says num_layers={depth}, but the weights hold {held}: the "
                         "config is not this model's. Pass the model itself, or its own config (model.config).")
    table = sd.get("transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight")
    num_classes = config.get("num_embeds_ada_norm", 1000)
    dropout = 0.1 if table is None or table.shape[0] == num_classes + 1 else 0.0
    eps = config.get("norm_eps", 1e-5)
    args = {
        "input_size": config.get("sample_size", 32),
        "patch_size": config.get("patch_size", 2),
        "in_channels": in_channels,
        "hidden_size": heads * head_dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": 4.0,
        "class_dropout_prob": dropout,
        "num_classes": num_classes,
        "learn_sigma": out_channels == 2 * in_channels,
        # diffusers: AdaLayerNormZero's norm (pre-attention) and norm_out use eps 1e-6, norm3 (pre-MLP) norm_eps
        "norm": {"attn": "layernorm(eps=1e-6)", "mlp": f"layernorm(eps={float(eps)!r})",
                 "final": "layernorm(eps=1e-6)"},
        "timestep_freq_shift": 1.0,
        **model_args,
    }
    model = DiT(**args)
    model.model_args = args
    # diffusers does not save its fixed positions (a non-persistent buffer); ours are the same sin-cos table.
    load_into(model, _diffusers_to_zoo(sd, depth), source="from_diffusers: the DiTTransformer2DModel state dict",
              may_be_missing=("pos_embed",))
    if isinstance(source, nn.Module):
        model.train(source.training)
    return model
