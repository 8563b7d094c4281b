"""Model families on the shared backbone, and the registry (``create_model``, ``list_models``, families)."""

from derf_zoo.models import caduceus, dit, gpt2, hyenadna, vit, wav2vec2
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
from derf_zoo.models.caduceus import Caduceus, from_caduceus, to_caduceus
from derf_zoo.models.dit import DiT, from_diffusers, from_official, to_diffusers, to_official
from derf_zoo.models.gpt2 import GPT2, from_nanogpt, from_transformers, to_nanogpt, to_transformers
from derf_zoo.models.hyenadna import HyenaDNA, from_hyenadna, to_hyenadna
from derf_zoo.models.vit import VisionTransformer, from_timm, to_timm

__all__ = [
    "GPT2",
    "Caduceus",
    "DiT",
    "HyenaDNA",
    "ModelFamily",
    "VisionTransformer",
    "caduceus",
    "create_model",
    "dit",
    "from_caduceus",
    "from_diffusers",
    "from_hyenadna",
    "from_nanogpt",
    "from_official",
    "from_pretrained",
    "from_timm",
    "from_transformers",
    "get_family",
    "get_model_entry",
    "gpt2",
    "hyenadna",
    "list_families",
    "list_models",
    "register_family",
    "register_model",
    "to_caduceus",
    "to_diffusers",
    "to_hyenadna",
    "to_nanogpt",
    "to_official",
    "to_timm",
    "to_transformers",
    "vit",
    "wav2vec2",
]
