"""Model families on the shared backbone, and the registry (``create_model``, ``list_models``, families)."""

from derf_zoo.models import vit
from derf_zoo.models._pretrained import from_pretrained
from derf_zoo.models._registry import (
    ModelFamily,
    create_model,
    get_family,
    get_model_entry,
    list_families,
    list_models,
    register_family,
    register_model,
)
from derf_zoo.models.vit import VisionTransformer, from_timm

__all__ = [
    "ModelFamily",
    "VisionTransformer",
    "create_model",
    "from_pretrained",
    "from_timm",
    "get_family",
    "get_model_entry",
    "list_families",
    "list_models",
    "register_family",
    "register_model",
    "vit",
]
