"""Weights: the strict loader (:func:`load_into`, safetensors reading and writing) and the declarative layout
engine every import and export of foreign weights goes through (:class:`Layout`, its rules, :func:`load_layout`).
Each family declares its layouts in ``derf_zoo.models.<family>.layouts`` and registers them by name on its
``ModelFamily``. ``derf_zoo.hub`` builds on this package, never the reverse."""

from derf_zoo.weights.layout import (
    TRANSPOSE,
    Fuse,
    Ignored,
    Layout,
    LayoutError,
    OursOnly,
    Rename,
    Tied,
    Transform,
)
from derf_zoo.weights.load import fresh_norm_prefixes, load_layout
from derf_zoo.weights.state_dict import WeightsMismatchError, load_into, read_safetensors, save_weights

__all__ = [
    "TRANSPOSE",
    "Fuse",
    "Ignored",
    "Layout",
    "LayoutError",
    "OursOnly",
    "Rename",
    "Tied",
    "Transform",
    "WeightsMismatchError",
    "fresh_norm_prefixes",
    "load_into",
    "load_layout",
    "read_safetensors",
    "save_weights",
]
