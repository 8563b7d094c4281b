"""Vision Transformer (Dosovitskiy et al., 2021) on the shared backbone, with a norm slot per site.

The paper's ViT setting (arXiv 2512.10938 §3.1, official ``ViT/main.py``) is timm's
``vit_{base,large}_patch16_224`` built with ``global_pool="avg"``: tokens are averaged and the final norm
moves after pooling (``fc_norm``). The ``vit_{size}_{derf,dyt,ln}`` entry points are that setting; the
``vit_{size}_patch16_224`` ones keep timm's defaults (class-token pooling) and take any ``norm``.

Layer names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``fc_norm``, ``head``) and the blocks live in ``backbone``; :func:`from_timm` maps timm weights in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from derf_zoo.backbone import BLOCK_SITES, Transformer
from derf_zoo.data.constants import (
    DIGITS_MEAN,
    DIGITS_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from derf_zoo.hub.mixin import HubMixin
from derf_zoo.hub.state_dict import load_into
from derf_zoo.layers import PatchEmbed, init_weights, trunc_normal_linear
from derf_zoo.models._builder import build_model, check_int
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.norms.layers import PointwiseNorm, RMSNorm
from derf_zoo.norms.registry import NormSpec, get_norm_layer, norm_spec_string, resolve_norm_sites
from derf_zoo.norms.sites import is_norm, is_rms_like, tag_site

__all__ = ["VisionTransformer", "from_timm"]


IMAGENET_DATA_CFG = {
    "input_size": (3, 224, 224),
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "crop_pct": 0.875,  # the ConvNeXt codebase the paper trains with: resize 256, center crop 224
    "crop_mode": "center",
    "interpolation": "bicubic",
    "first_conv": "patch_embed.proj",
    "classifier": "head",
}
DIGITS_DATA_CFG = {
    "input_size": (1, 16, 16),
    "mean": DIGITS_MEAN,
    "std": DIGITS_STD,
    "crop_pct": 1.0,
    "crop_mode": "center",
    "interpolation": "bilinear",
    "first_conv": "patch_embed.proj",
    "classifier": "head",
}
FASHION_MNIST_DATA_CFG = {
    "input_size": (1, 28, 28),
    "mean": FASHION_MNIST_MEAN,
    "std": FASHION_MNIST_STD,
    "crop_pct": 1.0,
    "crop_mode": "center",
    "interpolation": "bilinear",
    "first_conv": "patch_embed.proj",
    "classifier": "head",
}

GlobalPool = Literal["token", "avg"]


def timm_to_zoo_key(key: str) -> str:
    """Map a timm ViT state-dict key to ours: blocks live in ``backbone`` and attention is the ``mixer``."""
    if key.startswith("blocks."):
        return "backbone." + key.replace(".attn.", ".mixer.", 1)
    if key.startswith("norm."):
        return "backbone." + key
    return key


#: The ViT family: its norm sites are the backbone's; ImageClassification trains and evaluates it; timm's
#: ViT state dicts (and the official Derf ViT checkpoints, which use timm's layout) map in with timm_to_zoo_key.
FAMILY = register_family(ModelFamily(
    name="vit", norm_sites=BLOCK_SITES, task="derf_zoo.tasks.ImageClassification", task_type="image-classification",
    key_maps={"timm": timm_to_zoo_key},
))  # fmt: skip


class VisionTransformer(nn.Module, HubMixin):
    """ViT classifier: patch embedding + class token + learned positions -> Transformer -> pooled head.

    Args:
        img_size: input resolution; must be divisible by ``patch_size``.
        patch_size: patch side.
        in_chans: image channels.
        num_classes: classes of the head (0: no head, ``forward`` returns pooled features).
        global_pool: ``"token"`` (class token, final norm before pooling) or ``"avg"`` (mean of the patch
            tokens, final norm after pooling as ``fc_norm``: the paper's setting).
        embed_dim: width.
        depth: blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over ``embed_dim``.
        qkv_bias: bias on the qkv projection.
        class_token: prepend a learnable class token.
        norm: norm spec for every site, or per site (``attn``, ``mlp``, ``final``).
        norm_eps: eps of normalizing layers (timm's 1e-6).
        drop_rate: dropout before the head.
        pos_drop_rate: dropout after adding positions.
        attn_drop_rate: attention-probability dropout.
        proj_drop_rate: dropout after attention projection and in the MLP.
        drop_path_rate: stochastic depth of the last block (linear schedule).
        layer_scale: LayerScale initial value, or None.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: GlobalPool = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool = True,
        norm: NormSpec | Mapping[str, NormSpec] = "layernorm",
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        if global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}.")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True.")
        check_int("num_classes", num_classes, minimum=0)
        check_int("in_chans", in_chans, minimum=1)
        for name, value in (("img_size", img_size), ("patch_size", patch_size)):
            for v in value if isinstance(value, (tuple, list)) else (value,):
                check_int(name, v, minimum=1)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if class_token else 0
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        sites = resolve_norm_sites(norm, FAMILY.norm_sites)
        self.norm_specs = {site: norm_spec_string(f) for site, f in sites.items()}
        use_fc_norm = global_pool == "avg"
        self.backbone = Transformer(
            embed_dim, depth, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm=sites,
            norm_eps=norm_eps, drop_path_rate=drop_path_rate, attn_drop=attn_drop_rate, proj_drop=proj_drop_rate,
            layer_scale=layer_scale, final_norm=not use_fc_norm,
        )  # fmt: skip
        self.fc_norm = tag_site(sites["final"](embed_dim, eps=norm_eps), "final") if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's ViT init: truncated-normal(0.02) linears and positions, near-zero class token, zero biases.

        Submodules with an init of their own (adaLN-Zero modulation, say) keep it.
        """
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        init_weights(self, trunc_normal_linear)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass instead of storing them (timm's switch)."""
        self.backbone.set_grad_checkpointing(enable)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) -> tokens (B, prefix + patches, D), after the final norm for token pooling."""
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        return self.backbone(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool tokens, apply ``fc_norm`` (avg pooling) and the head; ``pre_logits`` stops before the head."""
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: GlobalPool | None = None) -> None:
        """Replace the head (timm's API); a new ``global_pool`` must keep the norm placement (token vs avg)."""
        if global_pool is not None and global_pool != self.global_pool:
            raise ValueError(
                f"This model was built with global_pool={self.global_pool!r}; the final norm sits "
                f"{'before' if self.global_pool == 'token' else 'after'} pooling, so switching to "
                f"{global_pool!r} needs a new model."
            )
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)


# ---- entry points ---------------------------------------------------------------------------------------

_SIZES = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
# An architecture of its own for the 8x8 digits, upsampled to 16x16: 16 tokens of width 64 (~0.2M parameters).
_NANO = {"img_size": 16, "patch_size": 4, "in_chans": 1, "num_classes": 10, "embed_dim": 64, "depth": 4,
         "num_heads": 4, "global_pool": "avg"}  # fmt: skip

# Fashion-MNIST's 28x28 grey images in 16 patches of 7x7, width 64 (~0.2M parameters): the benchmark's model.
_MINI = {"img_size": 28, "patch_size": 7, "in_chans": 1, "num_classes": 10, "embed_dim": 64, "depth": 4,
         "num_heads": 4, "global_pool": "avg"}  # fmt: skip



def _generic(name: str, size: str, pretrained: bool, kwargs: dict[str, Any]) -> VisionTransformer:
    """timm's ``vit_{size}_patch16_224``: class-token pooling, any ``norm=``."""
    return build_model(VisionTransformer, name, pretrained=pretrained, model_args={"patch_size": 16, **_SIZES[size]},
                       data_cfg=IMAGENET_DATA_CFG, **kwargs)  # fmt: skip


def _paper(name: str, size: str, norm: str, pretrained: bool, kwargs: dict[str, Any]) -> VisionTransformer:
    """The paper's ImageNet setting (§3.1): average pooling + fc_norm, ``norm`` in every site."""
    args = {"patch_size": 16, "global_pool": "avg", "norm": norm, **_SIZES[size]}
    return build_model(VisionTransformer, name, pretrained=pretrained, model_args=args, data_cfg=IMAGENET_DATA_CFG,
                       **kwargs)  # fmt: skip


def _nano(name: str, norm: str, pretrained: bool, kwargs: dict[str, Any]) -> VisionTransformer:
    """The demo's 0.2M-parameter ViT for 16x16 grayscale digits."""
    return build_model(VisionTransformer, name, pretrained=pretrained, model_args={**_NANO, "norm": norm},
                       data_cfg=DIGITS_DATA_CFG, **kwargs)  # fmt: skip


def _mini(name: str, norm: str, pretrained: bool, kwargs: dict[str, Any]) -> VisionTransformer:
    """The Fashion-MNIST benchmark's ViT (``recipes/vit/vit_mini_fmnist.yaml``, ``derf-zoo benchmark fmnist``)."""
    return build_model(VisionTransformer, name, pretrained=pretrained, model_args={**_MINI, "norm": norm},
                       data_cfg=FASHION_MNIST_DATA_CFG, **kwargs)  # fmt: skip


@register_model(family="vit", timm=False)
def vit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16 at 224 px with timm's defaults (class-token pooling); any ``norm=``. Same names and shapes as
    timm's ``vit_tiny_patch16_224``."""
    return _generic("vit_tiny_patch16_224", "tiny", pretrained, kwargs)


@register_model(family="vit", timm=False)
def vit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-S/16 at 224 px with timm's defaults (class-token pooling); any ``norm=``."""
    return _generic("vit_small_patch16_224", "small", pretrained, kwargs)


@register_model(family="vit", timm=False)
def vit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16 at 224 px with timm's defaults (class-token pooling); any ``norm=``."""
    return _generic("vit_base_patch16_224", "base", pretrained, kwargs)


@register_model(family="vit", timm=False)
def vit_large_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16 at 224 px with timm's defaults (class-token pooling); any ``norm=``."""
    return _generic("vit_large_patch16_224", "large", pretrained, kwargs)


@register_model(family="vit")
def vit_tiny_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16, 224 px, Derf in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_tiny_derf", "tiny", "derf", pretrained, kwargs)

@register_model(family="vit")
def vit_tiny_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16, 224 px, DyT in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_tiny_dyt", "tiny", "dyt", pretrained, kwargs)

@register_model(family="vit")
def vit_tiny_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Ti/16, 224 px, LayerNorm in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_tiny_ln", "tiny", "layernorm", pretrained, kwargs)

@register_model(family="vit")
def vit_small_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-S/16, 224 px, Derf in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_small_derf", "small", "derf", pretrained, kwargs)

@register_model(family="vit")
def vit_small_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-S/16, 224 px, DyT in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_small_dyt", "small", "dyt", pretrained, kwargs)

@register_model(family="vit")
def vit_small_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-S/16, 224 px, LayerNorm in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_small_ln", "small", "layernorm", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_base_derf_in1k.yaml",
                conversion="recipes/vit/vit_base_derf_from_augreg_in1k.yaml")
def vit_base_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16, 224 px, Derf in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_base_derf", "base", "derf", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_base_dyt_in1k.yaml")
def vit_base_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16, 224 px, DyT in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_base_dyt", "base", "dyt", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_base_ln_in1k.yaml")
def vit_base_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16, 224 px, LayerNorm in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_base_ln", "base", "layernorm", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_large_derf_in1k.yaml")
def vit_large_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16, 224 px, Derf in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_large_derf", "large", "derf", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_large_dyt_in1k.yaml")
def vit_large_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16, 224 px, DyT in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_large_dyt", "large", "dyt", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_large_ln_in1k.yaml")
def vit_large_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-L/16, 224 px, LayerNorm in every norm site, average pooling + fc_norm: the paper's setting."""
    return _paper("vit_large_ln", "large", "layernorm", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_nano_derf_digits.yaml")
def vit_nano_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 16x16 grayscale digits (patch 4, width 64, depth 4, average pooling) with Derf;
    the demo's model."""
    return _nano("vit_nano_derf", "derf", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_nano_dyt_digits.yaml")
def vit_nano_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 16x16 grayscale digits (patch 4, width 64, depth 4, average pooling) with DyT;
    the demo's model."""
    return _nano("vit_nano_dyt", "dyt", pretrained, kwargs)

@register_model(family="vit", recipe="recipes/vit/vit_nano_ln_digits.yaml")
def vit_nano_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 16x16 grayscale digits (patch 4, width 64, depth 4, average pooling) with LayerNorm;
    the demo's model."""
    return _nano("vit_nano_ln", "layernorm", pretrained, kwargs)


@register_model(family="vit", recipe="recipes/vit/vit_mini_fmnist.yaml",
                conversion="recipes/vit/vit_mini_derf_from_ln_fmnist.yaml")
def vit_mini_derf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 28x28 grey Fashion-MNIST (patch 7, width 64, depth 4, average pooling) with
    Derf; the benchmark's model."""
    return _mini("vit_mini_derf", "derf", pretrained, kwargs)


@register_model(family="vit", recipe="recipes/vit/vit_mini_fmnist.yaml")
def vit_mini_dyt(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 28x28 grey Fashion-MNIST (patch 7, width 64, depth 4, average pooling) with
    DyT; the benchmark's model."""
    return _mini("vit_mini_dyt", "dyt", pretrained, kwargs)


@register_model(family="vit", recipe="recipes/vit/vit_mini_fmnist.yaml")
def vit_mini_ln(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A 0.2M-parameter ViT for 28x28 grey Fashion-MNIST (patch 7, width 64, depth 4, average pooling) with
    LayerNorm; the benchmark's model."""
    return _mini("vit_mini_ln", "layernorm", pretrained, kwargs)


# timm reads a module's default_cfgs when an entry point registers; ours come from the manifest (derf_zoo.hub).
default_cfgs: dict[str, dict] = {}


# ---- timm import ----------------------------------------------------------------------------------------


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
        for s in resolve_norm_sites(args["norm"], FAMILY.norm_sites).values()
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


