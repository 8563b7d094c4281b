"""Norm specs: from ``"derf"``, ``"derf(alpha=1.0)"`` or ``{"name": "derf", ...}`` to a layer factory.

A *spec* says which norm a site gets. It can be

- a name: ``"derf"``, ``"dyt"``, ``"layernorm"``, ``"isru"``, ... (``list_norms()`` has them all);
- a name with keywords: ``"derf(alpha=1.0, shift=0.1)"``, ``"layernorm(eps=1e-5)"``, ``"derf(alpha=auto)"``;
- a mapping: ``{"name": "derf", "alpha_init": 1.0}``;
- a class or any callable ``factory(num_features, **kwargs) -> nn.Module`` (used as is);
- for a whole model, a per-site mapping: ``{"attn": "derf(alpha=0.8)", "mlp": "derf(alpha=0.2)", "final": "derf"}``
  (``"default"`` fills the sites not named).

Keyword values are read as YAML 1.2 (core schema) reads scalars, whether they come from a string spec or
from a mapping loaded from a config: ``affine=false`` / ``"False"`` is the bool False (only ``true`` and
``false``, in any case, are booleans; ``yes``/``no``/``on``/``off``/``1``/``0`` are refused for a boolean
keyword), and a number written as a string (``"1e-3"``, which PyYAML's YAML 1.1 leaves a string) is a
number. Every value is checked when the spec is read, with the checks the layer constructors make.

``get_norm_layer(spec)`` returns a :class:`NormFactory`, called like a norm class: ``factory(768)``.
Keywords in the spec win over the keywords the model passes (so ``"layernorm(eps=1e-5)"`` overrides a
model's ``eps=1e-6``), and ``str(factory)`` is the canonical spec, which is what configs store.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from derf_zoo._validate import unknown_name_error

__all__ = [
    "NormFactory",
    "NormSpec",
    "describe_norm",
    "get_norm_layer",
    "list_norms",
    "norm_spec_string",
    "resolve_norm_sites",
    "unknown_name_error",
]

NormSpec = str | Mapping[str, Any] | Callable[..., nn.Module] | None

# Short keyword spellings accepted in specs, mapped to the constructor argument they mean.
_KEYWORD_ALIASES = {"alpha": "alpha_init", "shift": "shift_init"}
_POINTWISE_KEYWORDS = ("alpha_init", "shift_init", "affine", "kernel", "channels_first")
_NORMALIZING_KEYWORDS = ("eps", "affine", "channels_first")
_NAME_ALIASES = {
    "ln": "layernorm",
    "layer_norm": "layernorm",
    "rms": "rmsnorm",
    "rms_norm": "rmsnorm",
    "none": "identity",
    "erf": "derf",
}


@dataclass(frozen=True)
class _NormEntry:
    cls_path: str  # resolved lazily: layers.py imports this module
    keywords: tuple[str, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""  # f(u) for point-wise norms, y for the others (`derf-zoo norms` prints it)

    def resolve_cls(self) -> type[nn.Module]:
        from derf_zoo.norms import layers

        return getattr(layers, self.cls_path)


@functools.cache
def _table() -> dict[str, _NormEntry]:
    """Every registered norm: the point-wise functions of the table, then the normalizing layers."""
    from derf_zoo.norms.functions import FUNCTIONS

    table: dict[str, _NormEntry] = {}
    for name, row in FUNCTIONS.items():
        keywords = tuple(k for k in _POINTWISE_KEYWORDS if row.uses_shift or k != "shift_init")
        cls = {"derf": "Derf", "dyt": "DyT"}.get(name, "PointwiseNorm")
        fixed = {} if cls != "PointwiseNorm" else {"function": name}
        table[name] = _NormEntry(cls, keywords, fixed, row.formula)
    table["layernorm"] = _NormEntry(
        "LayerNorm", _NORMALIZING_KEYWORDS, {}, "weight * (x - mean) / sqrt(var + eps) + bias"
    )
    table["rmsnorm"] = _NormEntry("RMSNorm", _NORMALIZING_KEYWORDS, {}, "weight * x / sqrt(mean(x^2) + eps)")
    table["identity"] = _NormEntry("Identity", ("affine", "channels_first"), {}, "x (no normalization at all)")
    return table


def describe_norm(name: str) -> str:
    """The formula of a registered norm: ``f(u)`` of a point-wise one (``"erf(u)"``), else its output."""
    return _table()[_canonical_name(name)].description


def list_norms(filter: str = "*") -> list[str]:
    """Names of every registered norm, optionally filtered by a glob (``list_norms("*clip")``)."""
    return sorted(n for n in _table() if fnmatch.fnmatch(n, filter))


def _canonical_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        # Not str(name): str(None) is "None", which is the alias of "identity".
        raise ValueError(
            f"A norm name must be a non-empty str, got {name!r}. Valid choices: {', '.join(sorted(_table()))}."
        )
    key = name.strip().lower()
    key = _NAME_ALIASES.get(key, key)
    if key not in _table():
        raise unknown_name_error("norm", name, _table())
    return key


_BOOL_KEYWORDS = ("affine", "channels_first")
_NUMBER_KEYWORDS = ("alpha_init", "shift_init", "eps")


def _read_value(owner: str, cls: type[nn.Module], key: str, value: Any) -> Any:
    """A keyword value as YAML 1.2 would read it, checked as the layer constructors check it."""
    from derf_zoo.norms import layers
    from derf_zoo.norms.kernels import check_kernel

    if key in _BOOL_KEYWORDS:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{owner}: {key} must be true or false (YAML 1.2 booleans, any case), got {value!r}.")
        return value
    if key in _NUMBER_KEYWORDS and isinstance(value, str):
        if key == "alpha_init" and value.strip().lower() == "auto":
            return "auto"
        with contextlib.suppress(ValueError):  # not a number: left as the string, which the check names
            value = float(value)
    if key == "alpha_init":
        return layers._check_alpha_init(owner, value)
    if key == "shift_init":
        layers._check_shift_init(owner, value)
    elif key == "eps":
        layers._check_eps(owner, value, allow_none=issubclass(cls, layers.RMSNorm))  # as the constructors do
    elif key == "kernel" and value is not None:
        check_kernel(value)
    return value


class NormFactory:
    """A norm class plus the keywords from a spec; call it like the class: ``factory(num_features, **kw)``.

    Keywords from the spec override those given at the call (a model's default ``eps``, say), except
    ``device`` and ``dtype``, which always come from the call.

    Args:
        name: a registered norm name or alias (``"derf"``, ``"ln"``, ...).
        kwargs: constructor keywords, short spellings (``alpha``, ``shift``) included. Values are read as
            YAML 1.2 reads them (``"false"`` is False, ``"1e-3"`` is 0.001) and checked.

    Raises:
        ValueError: an unknown name or keyword, a keyword given twice (``alpha`` and ``alpha_init``), or a
            bad value (a non-bool ``affine``, a non-finite or zero ``alpha_init``, an ``eps`` <= 0, ...).
    """

    def __init__(self, name: str, kwargs: Mapping[str, Any] | None = None) -> None:
        self.name = _canonical_name(name)
        entry = _table()[self.name]
        self.cls = entry.resolve_cls()
        owner = f"norm {self.name!r}"
        given: dict[str, str] = {}  # canonical keyword -> the spelling that set it
        self.kwargs: dict[str, Any] = {}
        for key, value in dict(kwargs or {}).items():
            canonical = _KEYWORD_ALIASES.get(key, key)
            if canonical not in entry.keywords:
                valid = sorted(entry.keywords) + sorted(k for k, v in _KEYWORD_ALIASES.items() if v in entry.keywords)
                raise unknown_name_error(f"keyword for norm {self.name!r}:", key, valid)
            if canonical in given:
                raise ValueError(
                    f"{owner}: {canonical} is given more than once ({given[canonical]!r} and {key!r}); give it once."
                )
            given[canonical] = key
            self.kwargs[canonical] = _read_value(owner, self.cls, canonical, value)
        self._fixed = dict(entry.fixed)

    def __call__(self, num_features: int, **kwargs: Any) -> nn.Module:
        return self.cls(num_features, **{**kwargs, **self._fixed, **self.kwargs})

    def __repr__(self) -> str:
        if not self.kwargs:
            return self.name
        inner = ", ".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NormFactory) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def _parse_string(spec: str) -> tuple[str, dict[str, Any]]:
    try:
        tree = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"Cannot parse norm spec {spec!r}: write a name or name(key=value, ...).") from err
    if isinstance(tree, ast.Name):
        return tree.id, {}
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and not tree.args:
        kwargs = {}
        for kw in tree.keywords:
            if kw.arg is None:
                raise ValueError(f"Cannot parse norm spec {spec!r}: '**' is not allowed.")
            if kw.arg in kwargs:  # ast.parse accepts f(a=1, a=2); only the compiler refuses it
                raise ValueError(f"Cannot parse norm spec {spec!r}: {kw.arg!r} is given more than once.")
            if isinstance(kw.value, ast.Name):
                # Bare words (auto, false, TRUE, nan, fused) stay strings; NormFactory reads them per keyword.
                kwargs[kw.arg] = kw.value.id
            else:
                try:
                    kwargs[kw.arg] = ast.literal_eval(kw.value)
                except ValueError as err:
                    raise ValueError(f"Cannot parse the value of {kw.arg!r} in norm spec {spec!r}.") from err
        return tree.func.id, kwargs
    raise ValueError(
        f"Cannot parse norm spec {spec!r}: write a name or name(key=value, ...), keywords only, e.g. 'derf(alpha=1.0)'."
    )


def get_norm_layer(spec: NormSpec) -> Callable[..., nn.Module]:
    """Turn a spec into a factory ``factory(num_features, **kwargs) -> nn.Module``.

    Args:
        spec: a name, ``"name(key=value, ...)"``, ``{"name": ..., **kwargs}``, or a class / callable
            (returned unchanged). ``None`` means ``"identity"``.

    Returns:
        A :class:`NormFactory` (or the callable that was passed).

    Raises:
        ValueError: unknown norm name or keyword, a keyword given twice, or a bad value (see
            :class:`NormFactory`); the message names the value and lists the valid choices.

    Example:
        >>> get_norm_layer("derf(alpha=1.0)")(768)
        Derf(768, alpha_init=1.0, shift_init=0.0, affine=True)
    """
    if spec is None:
        return NormFactory("identity")
    if isinstance(spec, NormFactory):
        return spec
    if isinstance(spec, str):
        return NormFactory(*_parse_string(spec))
    if isinstance(spec, Mapping):
        if "name" not in spec:
            raise ValueError(
                f"A norm spec mapping needs a 'name' key, got keys {sorted(spec)}; for a per-site "
                "mapping pass it where a model takes norm=... ."
            )
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        return NormFactory(spec["name"], kwargs)
    if callable(spec):
        return spec
    raise TypeError(f"A norm spec must be a str, a mapping or a callable, got {type(spec).__name__}: {spec!r}.")


def norm_spec_string(spec: NormSpec) -> str:
    """The canonical, JSON-friendly string of a spec (``repr`` of its factory, or the callable's name)."""
    factory = get_norm_layer(spec)
    if isinstance(factory, NormFactory):
        return repr(factory)
    return getattr(factory, "__qualname__", repr(factory))


def resolve_norm_sites(
    spec: NormSpec | Mapping[str, NormSpec], sites: Iterable[str], site_alpha: Mapping[str, float] | None = None
) -> dict[str, Callable[..., nn.Module]]:
    """Resolve a model's ``norm=`` argument into one factory per site.

    Args:
        spec: one spec for every site, or a per-site mapping (site name -> spec), where the key
            ``"default"`` covers the sites not named.
        sites: the sites this model has, e.g. ``("attn", "mlp", "final")``.
        site_alpha: a model's default ``alpha_init`` per site (``{"final": 0.1}``) for the point-wise norms whose
            spec does not set alpha itself (``"derf"`` takes it, ``"derf(alpha=0.5)"`` keeps its 0.5; normalizing
            layers ignore it). A narrow model's final site needs a small alpha to stay out of saturation (issue 18).

    Raises:
        ValueError: a mapping names a site the model does not have, or leaves one without a spec; a
            ``site_alpha`` site the model does not have or a bad alpha.
    """
    sites = tuple(sites)
    factories = _resolve_sites(spec, sites)
    for site, alpha in dict(site_alpha or {}).items():
        if site not in sites:
            raise unknown_name_error("site in site_alpha", site, sites)
        factory = factories[site]
        if (isinstance(factory, NormFactory) and "alpha_init" in _table()[factory.name].keywords
                and "alpha_init" not in factory.kwargs):  # fmt: skip
            factories[site] = NormFactory(factory.name, {**factory.kwargs, "alpha_init": alpha})
    return factories


def _resolve_sites(
    spec: NormSpec | Mapping[str, NormSpec], sites: tuple[str, ...]
) -> dict[str, Callable[..., nn.Module]]:
    is_per_site = isinstance(spec, Mapping) and "name" not in spec
    if not is_per_site:
        factory = get_norm_layer(spec)  # type: ignore[arg-type]
        return dict.fromkeys(sites, factory)
    for key in spec:
        if key not in sites and key != "default":
            raise unknown_name_error("norm site", key, (*sites, "default"))
    missing = [s for s in sites if s not in spec and "default" not in spec]
    if missing:
        raise ValueError(
            f"The per-site norm mapping has no spec for site(s) {missing}; give them or a 'default'. "
            f"This model's sites: {', '.join(sites)}."
        )
    return {s: get_norm_layer(spec.get(s, spec.get("default"))) for s in sites}


def parse_spec_string(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name(key=value, ...)"`` -> ``("name", {key: value})``: the spec syntax shared by the norm and mixer slots."""
    return _parse_string(spec)
