"""Weight layouts: the declarative engine every import and export of foreign weights goes through
(:class:`Layout`, its rules, :func:`load_layout`). Each family declares its layouts in
``derf_zoo.models.<family>.layouts`` and registers them by name on its ``ModelFamily``."""

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
    "fresh_norm_prefixes",
    "load_layout",
]
