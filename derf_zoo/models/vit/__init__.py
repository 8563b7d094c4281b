"""Vision Transformer (Dosovitskiy et al., 2021) on the shared backbone, with a norm slot per site.

The paper's ViT setting (arXiv 2512.10938 §3.1, official ``ViT/main.py``) is timm's
``vit_{base,large}_patch16_224`` built with ``global_pool="avg"``: tokens are averaged and the final norm
moves after pooling (``fc_norm``). The ``vit_{size}_{derf,dyt,ln}`` entry points are that setting; the
``vit_{size}_patch16_224`` ones keep timm's defaults (class-token pooling) and take any ``norm``.

Layer names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``fc_norm``, ``head``) and the blocks live in ``backbone``; :func:`from_timm` / :func:`to_timm` map timm's
weights in and out through ``TIMM_LAYOUT`` (registered on the family as ``"timm"``).
"""

from __future__ import annotations

from derf_zoo.models.vit.entrypoints import (
    DIGITS_DATA_CFG,
    FAMILY,
    FASHION_MNIST_DATA_CFG,
    IMAGENET_DATA_CFG,
    vit_base_derf,
    vit_base_dyt,
    vit_base_ln,
    vit_base_patch16_224,
    vit_large_derf,
    vit_large_dyt,
    vit_large_ln,
    vit_large_patch16_224,
    vit_mini_derf,
    vit_mini_dyt,
    vit_mini_ln,
    vit_nano_derf,
    vit_nano_dyt,
    vit_nano_ln,
    vit_small_derf,
    vit_small_dyt,
    vit_small_ln,
    vit_small_patch16_224,
    vit_tiny_derf,
    vit_tiny_dyt,
    vit_tiny_ln,
    vit_tiny_patch16_224,
)
from derf_zoo.models.vit.layouts import (
    TIMM_LAYOUT,
    from_timm,
    to_timm,
)
from derf_zoo.models.vit.model import (
    GlobalPool,
    VisionTransformer,
)

__all__ = [
    "DIGITS_DATA_CFG",
    "FAMILY",
    "FASHION_MNIST_DATA_CFG",
    "IMAGENET_DATA_CFG",
    "TIMM_LAYOUT",
    "GlobalPool",
    "VisionTransformer",
    "from_timm",
    "to_timm",
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
