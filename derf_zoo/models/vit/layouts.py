"""Foreign weight layouts of the VisionTransformer family: timm's ViT layout (and the official Derf ViT checkpoints,
which use it), imported and exported."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from derf_zoo.backbone import BLOCK_SITES
from derf_zoo.hub.state_dict import load_into
from derf_zoo.models.vit.model import VisionTransformer
from derf_zoo.norms.layers import PointwiseNorm, RMSNorm
from derf_zoo.norms.registry import NormSpec, get_norm_layer, resolve_norm_sites
from derf_zoo.norms.sites import is_norm, is_rms_like

__all__ = ["from_timm", "timm_to_zoo_key"]


def timm_to_zoo_key(key: str) -> str:
    """Map a timm ViT state-dict key to ours: blocks live in ``backbone`` and attention is the ``mixer``."""
    if key.startswith("blocks."):
        return "backbone." + key.replace(".attn.", ".mixer.", 1)
    if key.startswith("norm."):
        return "backbone." + key
    return key




def _timm_norm_spec(module: nn.Module) -> str:
    if isinstance(module, PointwiseNorm):
        return module.function
    if isinstance(module, RMSNorm) or is_rms_like(module):
        return "rmsnorm"
    if isinstance(module, nn.LayerNorm):
        return "layernorm"
    raise ValueError(f"from_timm: unsupported norm layer {type(module).__name__}.")


def _args_from_timm_model(model: nn.Module) -> dict[str, Any]:
    if getattr(model, "global_pool", None) not in ("token", "avg"):
        raise ValueError(
            f"from_timm supports global_pool 'token' or 'avg', got {getattr(model, 'global_pool', None)!r}."
        )
    block = model.blocks[0]
    ls = getattr(block, "ls1", None)
    return {
        "img_size": tuple(model.patch_embed.img_size),
        "patch_size": tuple(model.patch_embed.patch_size),
        "in_chans": model.patch_embed.proj.in_channels,
        "num_classes": model.num_classes,
        "global_pool": model.global_pool,
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / model.embed_dim,
        "qkv_bias": block.attn.qkv.bias is not None,
        "class_token": model.cls_token is not None,
        "norm": _timm_norm_spec(block.norm1),
        "norm_eps": getattr(block.norm1, "eps", 1e-6),
        "layer_scale": float(ls.gamma.flatten()[0]) if hasattr(ls, "gamma") else None,
    }


def _args_from_state_dict(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    missing = [k for k in ("patch_embed.proj.weight", "pos_embed", "blocks.0.norm1.weight") if k not in sd]
    if missing:
        raise ValueError(f"from_timm: this does not look like a timm ViT state dict; missing {missing}.")
    proj = sd["patch_embed.proj.weight"]
    embed_dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    class_token = "cls_token" in sd
    grid = math.isqrt(sd["pos_embed"].shape[1] - int(class_token))
    head = sd.get("head.weight")
    norm = "layernorm"
    if "blocks.0.norm1.alpha" in sd:
        norm = "derf" if "blocks.0.norm1.shift" in sd else "dyt"
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "in_chans": in_chans,
        "num_classes": head.shape[0] if head is not None else 0,
        "global_pool": "avg" if "fc_norm.weight" in sd or "fc_norm.alpha" in sd else "token",
        "embed_dim": embed_dim,
        "depth": 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks.")),
        "num_heads": max(1, embed_dim // 64),  # every standard timm ViT uses 64-wide heads
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "class_token": class_token,
        "norm": norm,
        "layer_scale": None,
    }


def from_timm(
    source: nn.Module | Mapping[str, Tensor],
    *,
    norm: NormSpec | Mapping[str, NormSpec] | None = None,
    copy_affine: bool = True,
    **model_args: Any,
) -> VisionTransformer:
    """Import a timm ViT (a model or its state dict) into the zoo, optionally with another norm.

    Args:
        source: a timm ``VisionTransformer`` (any norm layer, e.g. built with ``norm_layer=Derf``) or its
            state dict (for example an official Derf ViT checkpoint, loaded with ``weights_only=True``).
            Shapes are read from it; ``num_heads`` of a state dict defaults to ``embed_dim // 64``.
        norm: the zoo model's norm; None keeps the source's. When it differs, every non-norm weight is copied
            and the norms start fresh (with ``copy_affine``, their weight/bias are carried over).
        copy_affine: see ``norm``.
        **model_args: override inferred arguments (``num_heads``, ``drop_path_rate``, ...).

    Returns:
        A :class:`VisionTransformer` in eval mode if the source was, holding the source's weights.

    Raises:
        ValueError: the source is not a supported timm ViT.
        WeightsMismatchError: (a ValueError) a weight is missing, unexpected or has another shape; nothing is
            loaded.
    """
    if isinstance(source, nn.Module):
        args, sd = _args_from_timm_model(source), source.state_dict()
    else:
        args, sd = _args_from_state_dict(source), dict(source)
    source_norm = args["norm"]
    args.update(model_args)
    if norm is not None:
        args["norm"] = norm
    model = VisionTransformer(**args)
    mapped = {timm_to_zoo_key(k): v for k, v in sd.items()}
    same_norm = norm is None or all(
        str(get_norm_layer(s)) == str(get_norm_layer(source_norm))
        for s in resolve_norm_sites(args["norm"], BLOCK_SITES).values()
    )
    target = model.state_dict()
    norm_prefixes = tuple(n + "." for n, m in model.named_modules() if is_norm(m))
    if not same_norm:
        keep_affine = ("weight", "bias") if copy_affine else ()
        mapped = {
            k: v for k, v in mapped.items()
            if not k.startswith(norm_prefixes) or (k.rsplit(".", 1)[1] in keep_affine and k in target)
        }  # fmt: skip
    load_into(model, mapped, source="from_timm: the timm state dict", may_be_missing=() if same_norm else norm_prefixes)
    if isinstance(source, nn.Module):
        model.train(source.training)
    return model
