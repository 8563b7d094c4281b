"""derf_zoo: a PyTorch Lightning model zoo for normalization-free Transformers.

The norm slot (Derf, DyT, LayerNorm, RMSNorm and the paper's searched functions), a shared Transformer
backbone, per-domain LightningModules, Lightning CLI recipes and Hub checkpoints.
"""

__version__ = "0.1.0"

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
from derf_zoo.norms import (
    Derf,
    DyT,
    calibrate_alpha,
    convert_norms,
    get_norm_layer,
    list_norms,
)

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
