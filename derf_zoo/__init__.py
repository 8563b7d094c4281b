"""derf_zoo: a PyTorch Lightning model zoo for normalization-free Transformers.

The norm slot (Derf, DyT, LayerNorm, RMSNorm and the paper's searched functions), a shared Transformer
backbone, per-domain LightningModules, Lightning CLI recipes and Hub checkpoints.
"""

__version__ = "0.1.0"

from derf_zoo.backbone import Transformer, TransformerBlock
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
    "__version__",
    "calibrate_alpha",
    "convert_norms",
    "get_norm_layer",
    "list_norms",
]
