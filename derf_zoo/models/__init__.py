"""Model families on the shared backbone, and the registry (``create_model``, ``list_models``)."""

from derf_zoo.models import vit
from derf_zoo.models._registry import create_model, get_model_entry, list_models, register_model
from derf_zoo.models.vit import VisionTransformer, from_timm

__all__ = ["VisionTransformer", "create_model", "from_timm", "get_model_entry", "list_models", "register_model", "vit"]
