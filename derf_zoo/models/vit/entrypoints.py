"""Registered entry points of the vit family: the ViT architectures (timm's sizes, the paper's Derf/DyT/LN settings,
the CPU-sized nano/mini ones), its data configs and its registry record."""

from __future__ import annotations

from typing import Any

from derf_zoo.backbone import BLOCK_SITES
from derf_zoo.data.constants import (
    DIGITS_MEAN,
    DIGITS_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from derf_zoo.models._builder import build_model
from derf_zoo.models._registry import ModelFamily, register_family, register_model
from derf_zoo.models.vit.layouts import TIMM_LAYOUT
from derf_zoo.models.vit.model import VisionTransformer

__all__ = [
    "DIGITS_DATA_CFG",
    "FAMILY",
    "FASHION_MNIST_DATA_CFG",
    "IMAGENET_DATA_CFG",
    "vit_base_derf",
    "vit_base_dyt",
    "vit_base_ln",
    "vit_base_patch16_224",
    "vit_large_derf",
    "vit_large_dyt",
    "vit_large_ln",
    "vit_large_patch16_224",
    "vit_mini_derf",
    "vit_mini_dyt",
    "vit_mini_ln",
    "vit_nano_derf",
    "vit_nano_dyt",
    "vit_nano_ln",
    "vit_small_derf",
    "vit_small_dyt",
    "vit_small_ln",
    "vit_small_patch16_224",
    "vit_tiny_derf",
    "vit_tiny_dyt",
    "vit_tiny_ln",
    "vit_tiny_patch16_224",
]


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


#: The ViT family: its norm sites are the backbone's; ImageClassification trains and evaluates it; timm's
#: ViT state dicts (and the official Derf ViT checkpoints, which use timm's layout) map in through TIMM_LAYOUT.
FAMILY = register_family(ModelFamily(
    name="vit", norm_sites=BLOCK_SITES, task="derf_zoo.tasks.ImageClassification", task_type="image-classification",
    layouts={"timm": TIMM_LAYOUT},
))  # fmt: skip



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
