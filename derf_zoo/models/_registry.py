"""The model registry: ``@register_model`` entry points, ``create_model``, ``list_models``.

Entry points are registered in derf_zoo's registry and, when timm is importable, in timm's too, so
after ``import derf_zoo`` both ``derf_zoo.create_model("vit_base_derf")`` and
``timm.create_model("vit_base_derf")`` work. Generic architectures that share a name with a timm model
(``vit_base_patch16_224``) stay in derf_zoo's registry only, so timm's own model is never overwritten.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from derf_zoo.norms.registry import unknown_name_error

__all__ = ["ModelEntry", "create_model", "get_model_entry", "list_models", "register_model", "split_model_name"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: architecture name (``vit_base_derf``).
        fn: the entry point ``fn(pretrained=False, **kwargs) -> nn.Module``.
        family: ``"vit"``, ...
        recipe: the recipe that trains it (named in the error when no weights are released).
    """

    name: str
    fn: Callable[..., nn.Module]
    family: str
    recipe: str | None = None


_MODELS: dict[str, ModelEntry] = {}


def register_model(*, family: str, recipe: str | None = None, timm: bool = True) -> Callable:
    """Decorator registering an entry point under its function name.

    Args:
        family: model family (``"vit"``).
        recipe: path of the recipe that trains this architecture, if any.
        timm: also register it with timm (skip for names timm already uses).
    """

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[fn.__name__] = ModelEntry(fn.__name__, fn, family, recipe)
        if timm:
            try:
                from timm.models import register_model as timm_register
            except ImportError:  # pragma: no cover - timm is a dependency, but keep the registry usable without it
                pass
            else:
                timm_register(fn)
        return fn

    return decorator


def split_model_name(name: str) -> tuple[str, str | None]:
    """``"vit_nano_derf.digits"`` -> ``("vit_nano_derf", "digits")``."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def get_model_entry(name: str) -> ModelEntry:
    arch, _ = split_model_name(name)
    if arch not in _MODELS:
        raise unknown_name_error("model", arch, _MODELS)
    return _MODELS[arch]


def list_models(filter: str = "*", *, pretrained: bool = False) -> list[str]:
    """Registered names matching a glob; with ``pretrained=True`` only ``arch.tag`` names with released weights.

    Example:
        >>> list_models("*derf*")
        ['vit_base_derf', 'vit_large_derf', 'vit_nano_derf', 'vit_small_derf', 'vit_tiny_derf']
    """
    if pretrained:
        from derf_zoo.hub import released_weights

        names = [w.name for w in released_weights() if w.architecture in _MODELS]
    else:
        names = list(_MODELS)
    return sorted(n for n in names if fnmatch.fnmatch(n, filter))


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model: ``create_model("vit_base_patch16_224", norm="derf", num_classes=10)``.

    Args:
        name: architecture, optionally with a weight tag (``"vit_nano_derf.digits"``).
        pretrained: load the released weights (the tag's, or the architecture's default tag).
        **kwargs: model arguments (``num_classes``, ``drop_path_rate``, ``norm``, ...).

    Raises:
        ValueError: unknown name (the message suggests the closest one).
    """
    entry = get_model_entry(name)
    _, tag = split_model_name(name)
    if tag is not None:
        kwargs["pretrained_tag"] = tag
    return entry.fn(pretrained=pretrained, **kwargs)
