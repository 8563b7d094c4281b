"""derf_zoo: a PyTorch Lightning model zoo for normalization-free Transformers.

The norm slot (Derf, DyT, LayerNorm, RMSNorm and the paper's searched functions), a shared Transformer
backbone, per-domain LightningModules, Lightning CLI recipes and Hub checkpoints.

The public names below load lazily (PEP 562): ``import derf_zoo.norms`` or ``from derf_zoo import Derf`` costs
the norms alone, and only a model name (``from derf_zoo import vit_base_derf``, ``derf_zoo.create_model``) loads
the model families and timm. ``tests/test_import_time.py`` holds this.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access.
_LAZY: dict[str, str] = {
    "Derf": "derf_zoo.norms",
    "DyT": "derf_zoo.norms",
    "calibrate_alpha": "derf_zoo.norms",
    "convert_norms": "derf_zoo.norms",
    "get_norm_layer": "derf_zoo.norms",
    "list_norms": "derf_zoo.norms",
    "Transformer": "derf_zoo.backbone",
    "TransformerBlock": "derf_zoo.backbone",
    "VisionTransformer": "derf_zoo.models",
    "create_model": "derf_zoo.models",
    "from_pretrained": "derf_zoo.models",
    "list_models": "derf_zoo.models",
    **{
        f"vit_{size}_{norm}": "derf_zoo.models.vit"
        for size in ("nano", "tiny", "small", "base", "large")
        for norm in ("derf", "dyt", "ln")
    },
}

__all__ = [
    "Derf",
    "DyT",
    "Transformer",
    "TransformerBlock",
    "VisionTransformer",
    "__version__",
    "calibrate_alpha",
    "convert_norms",
    "create_model",
    "from_pretrained",
    "get_norm_layer",
    "list_models",
    "list_norms",
    "vit_base_derf",
    "vit_base_dyt",
    "vit_base_ln",
    "vit_large_derf",
    "vit_large_dyt",
    "vit_large_ln",
    "vit_nano_derf",
    "vit_nano_dyt",
    "vit_nano_ln",
    "vit_small_derf",
    "vit_small_dyt",
    "vit_small_ln",
    "vit_tiny_derf",
    "vit_tiny_dyt",
    "vit_tiny_ln",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these on first use
    from derf_zoo.backbone import Transformer, TransformerBlock
    from derf_zoo.models import VisionTransformer, create_model, from_pretrained, list_models
    from derf_zoo.models.vit import (
        vit_base_derf,
        vit_base_dyt,
        vit_base_ln,
        vit_large_derf,
        vit_large_dyt,
        vit_large_ln,
        vit_nano_derf,
        vit_nano_dyt,
        vit_nano_ln,
        vit_small_derf,
        vit_small_dyt,
        vit_small_ln,
        vit_tiny_derf,
        vit_tiny_dyt,
        vit_tiny_ln,
    )
    from derf_zoo.norms import Derf, DyT, calibrate_alpha, convert_norms, get_norm_layer, list_norms


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # cache: the next access skips __getattr__
        return value
    if not name.startswith("_"):
        # A subpackage (`import derf_zoo; derf_zoo.models.vit`), as when the root imported the families eagerly.
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":  # the subpackage exists but itself failed to import
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
