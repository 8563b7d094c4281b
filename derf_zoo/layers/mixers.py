"""The mixer slot: token mixers by spec, like the norm slot (``"attention"``, ``"attention(causal=True)"``).

A mixer maps tokens ``(B, L, D) -> (B, L, D)``. A spec is a registered name, a name with keywords, a mapping
``{"name": ..., **kwargs}`` (what a recipe and ``config.json`` hold), or from Python any callable
``mixer(dim, layer_index) -> nn.Module``. Registered mixers receive from the backbone the arguments they
declare (attention: ``num_heads``, ``qkv_bias``, ``attn_drop``, ``proj_drop``, ``causal``); keywords in the
spec win over them. Families register theirs with :func:`register_mixer` (the DNA models add Hyena and
BiMamba).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from derf_zoo.layers.attention import Attention
from derf_zoo.norms.registry import parse_spec_string, unknown_name_error

__all__ = ["MixerFactory", "MixerSpec", "get_mixer", "list_mixers", "register_mixer"]

MixerSpec = str | Mapping[str, Any] | Callable[[int, int], nn.Module] | None
BACKBONE_ARGUMENTS = ("num_heads", "qkv_bias", "attn_drop", "proj_drop", "causal")


@dataclass(frozen=True)
class _MixerEntry:
    cls: type[nn.Module]
    backbone_arguments: tuple[str, ...]  # which of the backbone's arguments the class takes
    keywords: tuple[str, ...]  # every keyword a spec may set
    defaults: Mapping[str, Any]  # their defaults, which say how a spec's text is read


_MIXERS: dict[str, _MixerEntry] = {}

#: Mixers that live in a family's package, imported the first time a spec names them (so a backbone built
#: outside that family, e.g. ``Transformer(mixer="hyena")``, finds them without importing every family).
_FAMILY_MIXERS = {"hyena": "derf_zoo.models.hyenadna.hyena", "bimamba": "derf_zoo.models.caduceus.bimamba"}


def _registered(name: str) -> _MixerEntry | None:
    if name not in _MIXERS and name in _FAMILY_MIXERS:
        import importlib

        importlib.import_module(_FAMILY_MIXERS[name])
    return _MIXERS.get(name)


def register_mixer(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make ``cls(dim, **kwargs)`` available as mixer ``name`` in specs."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        params = [p for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name not in ("self", "dim") and p.kind is not p.VAR_KEYWORD]  # fmt: skip
        keywords = tuple(p.name for p in params)
        defaults = {p.name: p.default for p in params if p.default is not p.empty}
        _MIXERS[name] = _MixerEntry(cls, tuple(k for k in BACKBONE_ARGUMENTS if k in keywords), keywords, defaults)
        return cls

    return decorator


register_mixer("attention")(Attention)


def list_mixers() -> list[str]:
    """Names of the registered mixers."""
    return sorted({*_MIXERS, *_FAMILY_MIXERS})


class MixerFactory:
    """A registered mixer plus the keywords of its spec; ``factory(dim, layer_index, **backbone_arguments)``."""

    def __init__(self, name: str, kwargs: Mapping[str, Any] | None = None) -> None:
        key = name.strip().lower()
        entry = _registered(key)
        if entry is None:
            raise unknown_name_error("mixer", name, list_mixers())
        self.name, self.entry = key, entry
        self.kwargs = {}
        for k, value in dict(kwargs or {}).items():
            if k not in self.entry.keywords:
                raise unknown_name_error(f"keyword for mixer {key!r}:", k, self.entry.keywords)
            self.kwargs[k] = self._read(k, value)

    def _read(self, key: str, value: Any) -> Any:
        """A spec's value as YAML 1.2 reads it, typed by the keyword's default (as the norm slot does)."""
        default = self.entry.defaults.get(key)
        if isinstance(default, bool):
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise ValueError(f"mixer {self.name!r}: {key} must be true or false, got {value!r}.")
            return value
        if isinstance(default, (int, float)) and isinstance(value, str):
            try:
                return type(default)(value) if isinstance(default, int) else float(value)
            except ValueError:
                raise ValueError(f"mixer {self.name!r}: {key} must be a number, got {value!r}.") from None
        return value

    def __call__(self, dim: int, layer_index: int = 0, **backbone_arguments: Any) -> nn.Module:
        given = {k: v for k, v in backbone_arguments.items() if k in self.entry.backbone_arguments}
        return self.entry.cls(dim, **{**given, **self.kwargs})

    def __repr__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())})"


def get_mixer(spec: MixerSpec) -> Callable[..., nn.Module]:
    """Turn a mixer spec into a factory; ``None`` is ``"attention"``.

    Raises:
        ValueError: unknown mixer or keyword (the message lists the valid ones).
    """
    if spec is None:
        return MixerFactory("attention")
    if isinstance(spec, MixerFactory):
        return spec
    if isinstance(spec, str):
        return MixerFactory(*parse_spec_string(spec))
    if isinstance(spec, Mapping):
        if not isinstance(spec.get("name"), str):
            raise ValueError(f"A mixer spec mapping needs a 'name' (one of {', '.join(list_mixers())}), got {spec!r}.")
        return MixerFactory(spec["name"], {k: v for k, v in spec.items() if k != "name"})
    if callable(spec):
        return spec
    raise TypeError(f"A mixer spec must be a str, a mapping or a callable, got {type(spec).__name__}: {spec!r}.")
