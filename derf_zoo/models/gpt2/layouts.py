"""Foreign weight layouts of the GPT2 family: Hugging Face transformers' GPT2LMHeadModel and nanoGPT layouts, imported
and exported."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from derf_zoo.models.gpt2.model import DEFAULT_ALPHA, GPT2, GPT2_SIZES
from derf_zoo.norms.registry import get_norm_layer
from derf_zoo.weights import TRANSPOSE, Ignored, Layout, Rename, Tied, load_layout
from derf_zoo.weights.checkpoint_file import read_checkpoint_file

__all__ = [
    "HF_LAYOUT",
    "NANOGPT_LAYOUT",
    "from_nanogpt",
    "from_transformers",
    "to_nanogpt",
    "to_transformers",
    "to_transformers_state_dict",
]


#: Hugging Face ``GPT2LMHeadModel``: Conv1D weights are ``[in, out]``, so every projection is transposed.
HF_LAYOUT = Layout("transformers GPT2LMHeadModel", (
    Rename("wte.weight", "transformer.wte.weight"),
    Rename("wpe.weight", "transformer.wpe.weight"),
    Rename("backbone.blocks.{i}.norm1.{p}", "transformer.h.{i}.ln_1.{p}"),
    Rename("backbone.blocks.{i}.mixer.qkv.weight", "transformer.h.{i}.attn.c_attn.weight", TRANSPOSE),
    Rename("backbone.blocks.{i}.mixer.qkv.bias", "transformer.h.{i}.attn.c_attn.bias"),
    Rename("backbone.blocks.{i}.mixer.proj.weight", "transformer.h.{i}.attn.c_proj.weight", TRANSPOSE),
    Rename("backbone.blocks.{i}.mixer.proj.bias", "transformer.h.{i}.attn.c_proj.bias"),
    Rename("backbone.blocks.{i}.norm2.{p}", "transformer.h.{i}.ln_2.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.weight", "transformer.h.{i}.mlp.c_fc.weight", TRANSPOSE),
    Rename("backbone.blocks.{i}.mlp.fc1.bias", "transformer.h.{i}.mlp.c_fc.bias"),
    Rename("backbone.blocks.{i}.mlp.fc2.weight", "transformer.h.{i}.mlp.c_proj.weight", TRANSPOSE),
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


def _load_mapped(model: GPT2, sd: dict[str, Tensor], source: str) -> GPT2:
    """Load mapped weights; the embedding scale of a point-wise model may be absent (LayerNorm weights)."""
    if "shared_scale" in sd:
        sd["shared_scale"] = sd["shared_scale"].reshape(1)  # the patch's scalar, whatever shape it was saved with
    optional = ("shared_scale",) if model.shared_scale is not None and "shared_scale" not in sd else ()
    return load_layout(model, sd, None, source=source, fresh_norms=True, may_be_missing=optional)


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


_NANOGPT_NORMS = {"derf": "derf", "dyt": "dyt"}  # the patch: anything else is LayerNorm
#: GPT-2's head counts by width, for a bare nanoGPT state dict without model_args.
_HEADS_BY_WIDTH = {size["n_embd"]: size["n_head"] for size in GPT2_SIZES.values()}


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

    A ``ckpt.pt`` (or a ``.safetensors`` state dict) is read weights-only by
    :func:`~derf_zoo.weights.checkpoint_file.read_checkpoint_file` (a ``ckpt.pt`` holds ``model``, ``optimizer``,
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
        source = read_checkpoint_file(source, who="from_nanogpt")
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
