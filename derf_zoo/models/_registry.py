"""The model registry: families, ``@register_model`` entry points, ``create_model``, ``list_models``.

A family (:class:`ModelFamily`) declares once what the rest of the zoo needs to know about its models: its
norm sites, the task that trains and evaluates them (and so the metrics of its checkpoints and model cards),
and the key maps of the foreign weight layouts it can import. The Hub layer reads these through the
registry's entries and never imports a family.

Entry points are registered in derf_zoo's registry and, when timm is importable, in timm's too, so after
``import derf_zoo`` both ``derf_zoo.create_model("vit_base_derf")`` and ``timm.create_model("vit_base_derf")``
work. Generic architectures that share a name with a timm model (``vit_base_patch16_224``) stay in derf_zoo's
registry only, so timm's own model is never overwritten.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from derf_zoo.norms.registry import unknown_name_error
from derf_zoo.weights.layout import Layout

__all__ = [
    "NATIVE_FORMAT",
    "ModelEntry",
    "ModelFamily",
    "create_model",
    "get_family",
    "get_model_entry",
    "list_families",
    "list_models",
    "register_family",
    "register_model",
    "split_model_name",
]

#: The weight layout of derf_zoo's own state dicts (no key map needed).
NATIVE_FORMAT = "derf_zoo"


@dataclass(frozen=True)
class ModelFamily:
    """What a family declares once, for the registry, the Hub layer, the tasks and the callbacks.

    Attributes:
        name: ``"vit"``, ``"dit"``, ...
        norm_sites: the norm sites its models have (a per-site ``norm=`` mapping accepts exactly these plus
            ``default``).
        task: import path of the task that trains and evaluates its checkpoints
            (``"derf_zoo.tasks.ImageClassification"``); its ``task_type`` and ``metrics`` are the card's.
        task_type: Hugging Face pipeline tag of what its models do (``"image-classification"``).
        layouts: foreign weight layouts it imports and exports, by name (``{"timm": TIMM_LAYOUT}``, see
            :mod:`derf_zoo.weights`). A manifest entry's ``source_format`` names one of them.
    """

    name: str
    norm_sites: tuple[str, ...]
    task: str
    task_type: str
    layouts: Mapping[str, Layout] = field(default_factory=dict)

    def layout(self, source_format: str) -> Layout | None:
        """The layout of weights in ``source_format`` (None for derf_zoo's own keys).

        Raises:
            ValueError: a layout this family does not declare (the message lists those it does).
        """
        if source_format == NATIVE_FORMAT:
            return None
        if source_format not in self.layouts:
            raise unknown_name_error(f"weight layout for the {self.name} family:", source_format,
                                     (NATIVE_FORMAT, *self.layouts))  # fmt: skip
        return self.layouts[source_format]


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: architecture name (``vit_base_derf``).
        fn: the entry point ``fn(pretrained=False, **kwargs) -> nn.Module`` (it builds from a config's
            ``model_args`` too).
        family: the :class:`ModelFamily` it belongs to.
        recipe: the recipe that trains it (named in the error when no weights are released).
        conversion: the recipe that makes it from LayerNorm weights people already hold (a fitted conversion and
            a distillation), named in the same error.
    """

    name: str
    fn: Callable[..., nn.Module]
    family: ModelFamily
    recipe: str | None = None
    conversion: str | None = None


_FAMILIES: dict[str, ModelFamily] = {}
_MODELS: dict[str, ModelEntry] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Declare a family (once, at the top of its module, before its entry points)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"A different model family named {family.name!r} is already registered.")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The registered family called ``name`` (``"vit"``).

    Raises:
        ValueError: no such family; the message names the closest registered one.
    """
    if name not in _FAMILIES:
        raise unknown_name_error("model family", name, _FAMILIES)
    return _FAMILIES[name]


def list_families() -> list[str]:
    """The registered families' names, sorted (``["caduceus", "dit", "hyenadna", "vit", "wav2vec2"]``)."""
    return sorted(_FAMILIES)


def register_model(*, family: str, recipe: str | None = None, conversion: str | None = None,
                   timm: bool = True) -> Callable:  # fmt: skip
    """Decorator registering an entry point under its function name.

    Args:
        family: a registered family's name (``"vit"``).
        recipe: path of the recipe that trains this architecture, if any.
        conversion: path of the recipe that converts pretrained LayerNorm weights into this architecture, if any.
        timm: also register it with timm (skip for names timm already uses).
    """
    declared = get_family(family)

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[fn.__name__] = ModelEntry(fn.__name__, fn, declared, recipe, conversion)
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
    """The registry's entry for an architecture: its entry point, family and recipe.

    Args:
        name: an architecture, optionally with a weight tag (``"vit_nano_derf.digits"``; the tag is ignored).

    Raises:
        ValueError: not a non-empty string, or no such architecture (the message suggests the closest one).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A model name must be a non-empty string such as 'vit_base_derf', got {name!r}; "
                         "list_models() has them all.")  # fmt: skip
    arch, _ = split_model_name(name)
    if arch not in _MODELS:
        raise unknown_name_error("model", arch, _MODELS)
    return _MODELS[arch]


def list_models(filter: str = "*", *, pretrained: bool = False) -> list[str]:
    """Registered names matching a glob; with ``pretrained=True`` only ``arch.tag`` names with released weights.

    Example:
        >>> list_models("vit_*_derf")
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
