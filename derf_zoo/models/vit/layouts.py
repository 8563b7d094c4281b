"""Foreign weight layouts of the VisionTransformer family: timm's ViT layout (and the official Derf ViT checkpoints,
which use it), imported and exported."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from derf_zoo.backbone import BLOCK_SITES
from derf_zoo.models.vit.model import VisionTransformer
from derf_zoo.norms.layers import PointwiseNorm, RMSNorm
from derf_zoo.norms.registry import NormSpec, get_norm_layer, resolve_norm_sites
from derf_zoo.norms.sites import is_norm, is_rms_like
from derf_zoo.weights import Layout, Rename
from derf_zoo.weights.checkpoint_file import checkpoint_args, pick_network, read_checkpoint_file
from derf_zoo.weights.state_dict import load_into

__all__ = ["TIMM_LAYOUT", "from_timm", "to_timm"]

logger = logging.getLogger(__name__)


#: timm's ``VisionTransformer`` (and the official Derf ViT checkpoints, which use it): the blocks and the final
#: norm live in our ``backbone``, and attention is its ``mixer``; everything else has timm's name. Each block
#: weight is listed, so a timm option this ViT lacks (``qk_norm``, a distillation token) is named as unknown.
TIMM_LAYOUT = Layout("timm VisionTransformer", (
    Rename("backbone.blocks.{i}.norm1.{p}", "blocks.{i}.norm1.{p}"),
    Rename("backbone.blocks.{i}.mixer.qkv.{p}", "blocks.{i}.attn.qkv.{p}"),
    Rename("backbone.blocks.{i}.mixer.proj.{p}", "blocks.{i}.attn.proj.{p}"),
    Rename("backbone.blocks.{i}.ls1.gamma", "blocks.{i}.ls1.gamma"),
    Rename("backbone.blocks.{i}.norm2.{p}", "blocks.{i}.norm2.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    Rename("backbone.blocks.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
    Rename("backbone.blocks.{i}.ls2.gamma", "blocks.{i}.ls2.gamma"),
    Rename("backbone.norm.{p}", "norm.{p}"),
    Rename("cls_token", "cls_token"),
    Rename("reg_token", "reg_token"),
    Rename("pos_embed", "pos_embed"),
    Rename("patch_embed.proj.{p}", "patch_embed.proj.{p}"),
    Rename("fc_norm.{p}", "fc_norm.{p}"),
    Rename("head.{p}", "head.{p}"),
), strip_prefixes=("module.",))  # fmt: skip


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
        "layer_scale": float(ls.gamma.detach().flatten()[0]) if hasattr(ls, "gamma") else None,
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
        # LayerScale's initial value: any number builds it, and the weights hold the trained gammas
        "layer_scale": float(sd["blocks.0.ls1.gamma"].flatten()[0]) if "blocks.0.ls1.gamma" in sd else None,
    }


def _read_official_file(path: str | Path, weights: str | None) -> dict[str, Tensor]:
    """The network of a timm-layout file: a bare state dict, or an official Derf ViT training checkpoint
    ({``model``, ``model_ema``, ``optimizer``, ``scaler``, ``epoch``, ``args``}). The official code (ConvNeXt's
    ``main.py``) always evaluates ``model`` and evaluates ``model_ema`` only with ``--model_ema true --model_ema_eval
    true``; the checkpoint's own ``args`` say which, and the EMA network is taken only when they evaluated it."""
    obj = read_checkpoint_file(path, who="from_timm")
    args = checkpoint_args(obj)
    ema_evaluated = bool(args.get("model_ema")) and bool(args.get("model_ema_eval"))
    prefer = (weights,) if weights else ("model_ema", "model") if ema_evaluated else ("model", "model_ema")
    sd, key = pick_network(obj, prefer, where=str(path), who="from_timm")
    if weights and key != weights:
        raise ValueError(f"from_timm: weights={weights!r}, but {path} is a bare state dict, not a training "
                         "checkpoint; leave weights unset.")  # fmt: skip
    if key is None:
        what = "a bare state dict"
    elif weights:
        what = f"the {key!r} network, as asked"
    elif key == "model_ema":
        what = "the 'model_ema' network" + (", which its args evaluated" if ema_evaluated else " (it has no 'model')")
    else:
        what = "the 'model' network" + (", as its args evaluated no EMA" if "model_ema" in obj else "")
    logger.info("from_timm: read %s of %s", what, path)
    return sd


def from_timm(
    source: nn.Module | Mapping[str, Tensor] | str | Path,
    *,
    norm: NormSpec | Mapping[str, NormSpec] | None = None,
    copy_affine: bool = True,
    weights: str | None = None,
    **model_args: Any,
) -> VisionTransformer:
    """Import a timm ViT (a model, its state dict, or a file) into the zoo, optionally with another norm.

    Args:
        source: a timm ``VisionTransformer`` (any norm layer, e.g. built with ``norm_layer=Derf``), its state
            dict, or the path of a file holding one: ``.safetensors``, a ``torch.save``'d state dict, or an official
            Derf ViT training checkpoint (``checkpoint-N.pth``), read weights-only with ``argparse.Namespace`` the
            one class allowed (it pickles its arguments). Of a checkpoint the ``model`` network is taken, or
            ``model_ema`` when its ``args`` evaluated the EMA (``model_ema`` and ``model_ema_eval`` true), as the
            official code reports; the choice is logged (``logging``, INFO). Shapes are read from the weights;
            ``num_heads`` of a state dict defaults to ``embed_dim // 64``.
        norm: the zoo model's norm; None keeps the source's. When it differs, every non-norm weight is copied
            and the norms start fresh (with ``copy_affine``, their weight/bias are carried over).
        copy_affine: see ``norm``.
        weights: the network of a checkpoint file to take (``"model"``, ``"model_ema"``), instead of the rule above.
        **model_args: override inferred arguments (``num_heads``, ``drop_path_rate``, ...).

    Returns:
        A :class:`VisionTransformer` in eval mode if the source was, holding the source's weights.

    Raises:
        ValueError: the source is not a supported timm ViT, or a file not weights-only loadable.
        FileNotFoundError: a path that is no file.
        WeightsMismatchError: (a ValueError) a weight is missing, unexpected or has another shape; nothing is
            loaded.
    """
    if isinstance(source, (str, Path)):
        source = _read_official_file(source, weights)
    elif weights is not None:
        raise ValueError("from_timm: weights= picks a network of a checkpoint file; pass the file's path.")
    if isinstance(source, nn.Module):
        args, sd = _args_from_timm_model(source), source.state_dict()
    else:
        sd = TIMM_LAYOUT.strip(source)  # a DDP run's module. prefix, before the architecture is read from the keys
        args = _args_from_state_dict(sd)
    source_norm = args["norm"]
    args.update(model_args)
    if norm is not None:
        args["norm"] = norm
    model = VisionTransformer(**args)
    mapped = TIMM_LAYOUT.to_ours(sd)
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


def to_timm(model: VisionTransformer) -> dict[str, Tensor]:
    """``model``'s weights in timm's ``VisionTransformer`` layout: the state dict that timm's ViT of the same
    configuration loads with ``strict=True`` (with ``norm_layer`` the same norm: ``Derf`` for a Derf model, as the
    official Derf ViT builds it; ``global_pool``, ``class_token``, ``init_values`` for layer scale as the model's).
    :func:`from_timm` reads it back."""
    return TIMM_LAYOUT.to_theirs(model.state_dict())
