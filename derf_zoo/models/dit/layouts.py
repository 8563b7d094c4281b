"""Foreign weight layouts of the DiT family: the official facebookresearch/DiT layout and diffusers'
DiTTransformer2DModel, imported and exported."""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from derf_zoo.models.dit.model import DiT
from derf_zoo.norms.sites import is_rms_like
from derf_zoo.weights import Fuse, Layout, LayoutError, OursOnly, Rename, Tied, load_layout
from derf_zoo.weights.checkpoint_file import pick_network, read_checkpoint_file

__all__ = ["DIFFUSERS_LAYOUT", "OFFICIAL_LAYOUT", "from_diffusers", "from_official", "to_diffusers", "to_official"]

logger = logging.getLogger(__name__)


#: facebookresearch/DiT's ``DiT`` (and zlab-princeton/Derf's DiT, whose norms hold ``alpha``/``shift``): the blocks
#: live in our ``backbone``, attention is its ``mixer`` and the adaLN ``Sequential(SiLU, Linear)`` our ``modulation``.
OFFICIAL_LAYOUT = Layout("official DiT", (
    Rename("pos_embed", "pos_embed"),
    Rename("x_embedder.proj.{p}", "x_embedder.proj.{p}"),
    Rename("t_embedder.mlp.{j}.{p}", "t_embedder.mlp.{j}.{p}"),
    Rename("y_embedder.embedding_table.weight", "y_embedder.embedding_table.weight"),
    Rename("backbone.blocks.{i}.norm1.{p}", "blocks.{i}.norm1.{p}"),
    Rename("backbone.blocks.{i}.mixer.qkv.{p}", "blocks.{i}.attn.qkv.{p}"),
    Rename("backbone.blocks.{i}.mixer.proj.{p}", "blocks.{i}.attn.proj.{p}"),
    Rename("backbone.blocks.{i}.norm2.{p}", "blocks.{i}.norm2.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
    Rename("backbone.blocks.{i}.modulation.linear.{p}", "blocks.{i}.adaLN_modulation.1.{p}"),
    Rename("final_layer.norm_final.{p}", "final_layer.norm_final.{p}"),
    Rename("final_layer.modulation.linear.{p}", "final_layer.adaLN_modulation.1.{p}"),
    Rename("final_layer.linear.{p}", "final_layer.linear.{p}"),
))  # fmt: skip

_EMB_0, _EMB_I = "transformer_blocks.0.norm1.emb.", "transformer_blocks.{i}.norm1.emb."
#: diffusers' ``DiTTransformer2DModel``: q/k/v apart (fused here), the adaLN linear inside ``norm1``, and the
#: timestep and label embedders repeated in every block's ``norm1.emb`` (one shared embedder here: block 0's is
#: imported, every other copy must equal it, and the export writes it into every block). Its positions are a
#: non-persistent buffer, so our ``pos_embed`` (the same sin-cos table) stays as the model built it.
DIFFUSERS_LAYOUT = Layout("diffusers DiTTransformer2DModel", (
    Rename("x_embedder.proj.{p}", "pos_embed.proj.{p}"),
    OursOnly("pos_embed"),
    Rename("t_embedder.mlp.0.{p}", _EMB_0 + "timestep_embedder.linear_1.{p}"),
    Rename("t_embedder.mlp.2.{p}", _EMB_0 + "timestep_embedder.linear_2.{p}"),
    Rename("y_embedder.embedding_table.weight", _EMB_0 + "class_embedder.embedding_table.weight"),
    Tied(_EMB_I + "timestep_embedder.linear_1.{p}", same_as=_EMB_0 + "timestep_embedder.linear_1.{p}"),
    Tied(_EMB_I + "timestep_embedder.linear_2.{p}", same_as=_EMB_0 + "timestep_embedder.linear_2.{p}"),
    Tied(_EMB_I + "class_embedder.embedding_table.weight", same_as=_EMB_0 + "class_embedder.embedding_table.weight"),
    Rename("backbone.blocks.{i}.modulation.linear.{p}", "transformer_blocks.{i}.norm1.linear.{p}"),
    Fuse("backbone.blocks.{i}.mixer.qkv.{p}", ("transformer_blocks.{i}.attn1.to_q.{p}",
                                              "transformer_blocks.{i}.attn1.to_k.{p}",
                                              "transformer_blocks.{i}.attn1.to_v.{p}")),
    Rename("backbone.blocks.{i}.mixer.proj.{p}", "transformer_blocks.{i}.attn1.to_out.0.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.{p}", "transformer_blocks.{i}.ff.net.0.proj.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc2.{p}", "transformer_blocks.{i}.ff.net.2.{p}"),
    Rename("final_layer.modulation.linear.{p}", "proj_out_1.{p}"),
    Rename("final_layer.linear.{p}", "proj_out_2.{p}"),
))  # fmt: skip


_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")
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


def _read_official_file(path: str | Path, weights: str | None) -> dict[str, Tensor]:
    """The network of an official DiT file: a bare state dict (Meta's ``DiT-XL-2-256x256.pt``) or a training
    checkpoint ({``model``, ``ema``, ``opt``, ``args``}), whose ``ema`` is taken as the official sampler's
    ``find_model`` does (``weights="model"`` for the raw network)."""
    obj = read_checkpoint_file(path, who="from_official")
    prefer = (weights,) if weights else ("ema", "model")
    sd, key = pick_network(obj, prefer, where=str(path), who="from_official")
    if weights and key != weights:
        raise ValueError(f"from_official: weights={weights!r}, but {path} is a bare state dict, not a training "
                         "checkpoint; leave weights unset.")  # fmt: skip
    logger.info("from_official: %s: %s", path, f"the {key!r} network" if key else "a bare state dict")
    return sd


def from_official(source: nn.Module | Mapping[str, Tensor] | str | Path, *, weights: str | None = None,
                  **model_args: Any) -> DiT:  # fmt: skip
    """Build a :class:`DiT` holding an official DiT's weights (facebookresearch/DiT or zlab-princeton/Derf DiT):
    its state dict, the official ``DiT`` module itself (the result keeps its train/eval mode), or a file.

    A file is read weights-only (``argparse.Namespace`` the one class allowed: official training checkpoints pickle
    their arguments). Of a training checkpoint the ``ema`` network is taken, as the official sampler does (its
    ``find_model``); ``weights="model"`` takes the raw one. The choice is logged (``logging``, INFO).

    Shapes, depth, ``learn_sigma`` and the norm (LayerNorm, or Derf/DyT from ``alpha``/``shift`` keys) are read
    from the weights; ``num_heads`` defaults to the standard size's; the null class is assumed (pass
    ``class_dropout_prob=0`` for a table without it). ``model_args`` override anything else
    (``norm="derf(alpha=1.0)"``: the point-wise norms then start fresh).

    Raises:
        ValueError: not an official DiT state dict (a key the layout does not know is named), a file that is not
            weights-only loadable, or a weight missing, unexpected or misshapen (nothing is loaded then).
    """
    module = source if isinstance(source, nn.Module) else None
    if isinstance(source, (str, Path)):
        sd = _read_official_file(source, weights)
    elif weights is not None:
        raise ValueError("from_official: weights= picks a network of a checkpoint file; pass the file's path.")
    else:
        sd = dict(module.state_dict() if module is not None else source)
    args = {**_args_from_official(sd, model_args), **model_args}
    model = DiT(**args)
    model.model_args = args
    load_layout(model, sd, OFFICIAL_LAYOUT, source="from_official: the official DiT state dict", fresh_norms=True)
    if module is not None:
        model.train(module.training)
    return model


def to_official(model: DiT) -> dict[str, Tensor]:
    """``model``'s weights in the official DiT layout (``blocks.N.attn.qkv``, ``blocks.N.adaLN_modulation.1``,
    ``final_layer.adaLN_modulation.1``, ...), which the official ``DiT`` (with the same norm) loads with
    ``strict=True``."""
    return OFFICIAL_LAYOUT.to_theirs(model.state_dict())


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
    try:  # the layout leaves pos_embed to the model (OursOnly): diffusers does not save its fixed sin-cos table
        load_layout(model, sd, DIFFUSERS_LAYOUT, source="from_diffusers: the DiTTransformer2DModel state dict",
                    fresh_norms=True)
    except LayoutError as err:
        if "should be tied" not in str(err):
            raise
        raise LayoutError(f"from_diffusers: {err} diffusers' DiT keeps a timestep/label embedder in every block; "
                          "derf_zoo's DiT (like the official one) has one embedder shared by all blocks, so every "
                          "copy must equal block 0's. (A DiTTransformer2DModel converted from the official weights "
                          "has identical copies; one trained in diffusers may not.)") from err  # fmt: skip
    if isinstance(source, nn.Module):
        model.train(source.training)
    return model


def _diffusers_config(model: DiT) -> dict[str, Any]:
    """The ``DiTTransformer2DModel`` config of ``model``, or a ValueError naming what diffusers cannot hold."""
    block = model.backbone.blocks[0]
    norms = {"attn": block.norm1, "mlp": block.norm2, "final": model.final_layer.norm_final}
    problems = [f"the {site!r} norm is {model.norm_specs[site]}" for site, m in norms.items()
                if not isinstance(m, nn.LayerNorm) or is_rms_like(m) or m.elementwise_affine]  # fmt: skip
    if not problems:
        problems += [f"the {site!r} norm's eps is {norms[site].eps} (diffusers fixes 1e-6 there)"
                     for site in ("attn", "final") if norms[site].eps != 1e-6]  # fmt: skip
    if block.mlp.fc1.out_features != 4 * model.hidden_size:
        problems.append(f"its MLP is {block.mlp.fc1.out_features} wide (diffusers: 4 x {model.hidden_size})")
    if not model.y_embedder.has_null_class:
        problems.append("it has no null class (class_dropout_prob=0; diffusers' label table always has one)")
    if problems:
        raise ValueError("to_diffusers: diffusers' DiTTransformer2DModel has affine-free LayerNorms (eps 1e-6 before "
                         "attention and at the end), a 4x MLP and a null class, but " + "; ".join(problems) + ".")
    return {"num_attention_heads": model.num_heads, "attention_head_dim": model.hidden_size // model.num_heads,
            "in_channels": model.in_channels, "out_channels": model.out_channels,
            "num_layers": len(model.backbone.blocks), "sample_size": model.input_size, "patch_size": model.patch_size,
            "num_embeds_ada_norm": model.num_classes, "norm_eps": norms["mlp"].eps, "norm_type": "ada_norm_zero",
            "norm_elementwise_affine": False, "activation_fn": "gelu-approximate", "attention_bias": True}  # fmt: skip


def to_diffusers(model: DiT) -> nn.Module:
    """A ``diffusers.DiTTransformer2DModel`` with this model's weights (loaded with ``strict=True``), in the same
    train/eval mode; the shared timestep/label embedders are written into every block.

    diffusers' timestep sinusoid divides by ``half - 1`` (``timestep_freq_shift=1``); a model with the official
    ``timestep_freq_shift=0`` exports with a warning, since diffusers' model then embeds timesteps slightly
    differently (as diffusers' own conversion of Meta's DiT weights does).

    Raises:
        ValueError: a model diffusers' DiT cannot hold (point-wise or affine norms, another eps before attention
            or at the end, an MLP other than 4x, no null class).
    """
    from diffusers import DiTTransformer2DModel

    config = _diffusers_config(model)
    if model.t_embedder.freq_shift != 1:
        warnings.warn(f"to_diffusers: this model's timestep_freq_shift is {model.t_embedder.freq_shift} and "
                      "diffusers' is 1: the exported model embeds timesteps slightly differently (as diffusers' "
                      "conversion of the official DiT weights does).", stacklevel=2)  # fmt: skip
    reference = DiTTransformer2DModel(**config)
    reference.load_state_dict(DIFFUSERS_LAYOUT.to_theirs(model.state_dict()), strict=True)
    return reference.train(model.training)
