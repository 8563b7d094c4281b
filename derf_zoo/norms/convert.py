"""Swap the norms of an existing model (timm, transformers, torch) for any norm of the slot.

derf_zoo's own models are built with the right norm; this is for third-party models and pretrained
conversions. It replaces LayerNorm-like and RMSNorm-like layers and never touches BatchNorm, GroupNorm
or InstanceNorm (the paper keeps those: they normalise data, not the residual stream).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from derf_zoo.norms.fit import POOR_FIT, FitReport, fit_pointwise_norms
from derf_zoo.norms.registry import NormSpec, get_norm_layer
from derf_zoo.norms.sites import is_rms_like

__all__ = ["ConversionReport", "Replacement", "convert_norms"]

Pattern = str | Iterable[str] | Callable[[str, nn.Module], bool] | None


@dataclass(frozen=True)
class Replacement:
    name: str
    old_type: str
    new_type: str
    num_features: int


@dataclass
class ConversionReport:
    """Every module :func:`convert_norms` replaced (or would replace, for a dry run)."""

    replaced: list[Replacement] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    dry_run: bool = False
    fit: FitReport | None = None  # with convert_norms(..., fit=inputs): how well each new norm was fitted

    def __len__(self) -> int:
        return len(self.replaced)

    def __iter__(self):
        return iter(self.replaced)

    def counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for r in self.replaced:
            out[(r.old_type, r.new_type)] = out.get((r.old_type, r.new_type), 0) + 1
        return out

    def __str__(self) -> str:
        verb = "would replace" if self.dry_run else "replaced"
        lines = [f"convert_norms {verb} {len(self.replaced)} module(s)"]
        if self.replaced:
            w = max(len(r.name) for r in self.replaced)
            lines.append(f"  {'module':<{w}}  {'old':<16}  {'new':<16}  features")
            lines += [f"  {r.name:<{w}}  {r.old_type:<16}  {r.new_type:<16}  {r.num_features}" for r in self.replaced]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        if self.fit is not None:
            lines.append(str(self.fit))
        return "\n".join(lines)


@dataclass(frozen=True)
class _NormInfo:
    num_features: int
    eps: float | None
    affine: bool
    channels_first: bool


def _channels_first_classes() -> tuple[type, ...]:
    try:
        from timm.layers import norm as timm_norm
    except ImportError:
        return ()
    names = ("LayerNorm2d", "LayerNorm2dFp32", "RmsNorm2d", "RmsNorm2dFp32")
    return tuple(getattr(timm_norm, n) for n in names if hasattr(timm_norm, n))


def _describe(module: nn.Module) -> _NormInfo | str | None:
    """How to rebuild ``module`` as a slot norm; a reason string if it looks like a norm we can't convert."""
    from derf_zoo.norms.layers import Identity, PointwiseNorm, RMSNorm

    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, PointwiseNorm, Identity)):
        return None
    channels_first = isinstance(module, _channels_first_classes()) or bool(getattr(module, "channels_first", False))
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            return f"normalized_shape {tuple(module.normalized_shape)} is not 1-D"
        return _NormInfo(module.normalized_shape[0], module.eps, module.weight is not None, channels_first)
    if isinstance(module, RMSNorm) or is_rms_like(module):
        weight = getattr(module, "weight", None)
        shape = getattr(module, "normalized_shape", None)
        if weight is not None:
            num = weight.shape[0]
        elif shape is not None and len(shape) == 1:
            num = shape[0]
        elif hasattr(module, "num_features"):
            num = module.num_features
        else:
            return "cannot tell its feature count (no weight, no normalized_shape)"
        eps = getattr(module, "eps", getattr(module, "variance_epsilon", None))
        return _NormInfo(int(num), eps, weight is not None, channels_first)
    return None


def _matches(name: str, module: nn.Module, pattern: Pattern) -> bool:
    if callable(pattern):
        return bool(pattern(name, module))
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ())
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


@torch.no_grad()
def convert_norms(
    model: nn.Module,
    to: NormSpec,
    *,
    copy_affine: bool = False,
    include: Pattern = None,
    exclude: Pattern = None,
    dry_run: bool = False,
    fit: Any = None,
    forward: Callable[[nn.Module], Any] | None = None,
    poor_threshold: float = POOR_FIT,
) -> ConversionReport:
    """Replace LayerNorm / RMSNorm layers of ``model`` in place with the norm ``to``.

    Converts ``nn.LayerNorm`` and subclasses (timm ``LayerNorm``, ``LayerNorm2d`` as channels-first),
    ``nn.RMSNorm``, timm ``RmsNorm``/``RmsNorm2d`` and the RMSNorm classes of transformers models (weight
    only, eps in ``variance_epsilon``). BatchNorm, GroupNorm and InstanceNorm are never touched.

    Args:
        model: the model to change in place.
        to: the norm spec (``"derf"``, ``"dyt(alpha=0.8)"``, a class, ...), validated before anything changes.
        copy_affine: carry the trained ``weight``/``bias`` over (an RMSNorm's missing bias becomes zeros).
        include: only convert modules whose qualified name matches (glob, list of globs, or a predicate
            ``(name, module) -> bool``).
        exclude: skip modules that match (same forms).
        dry_run: report what would be replaced and change nothing.
        fit: calibration inputs (a tensor, a tuple of model arguments, a dict of keyword arguments, or an iterable
            of such batches): fit every new point-wise norm to the layer it replaces, in forward order, on the
            inputs it sees inside the converted model (:func:`~derf_zoo.norms.fit.fit_pointwise_norms`): alpha,
            shift, and (with affine) per-channel weight and bias. Implies copying the affine. All or nothing: if
            the fit fails, the original layers are put back.
        forward: with ``fit``, a custom call ``forward(model)`` instead of ``model(*inputs)``.
        poor_threshold: with ``fit``, the unexplained variance above which the report names a layer as poorly
            fitted (a candidate for ``exclude``).

    Returns:
        A :class:`ConversionReport`; ``print(report)`` shows a table (and the fit, with ``fit``).

    Raises:
        ValueError: a bad spec; with ``fit``, a target that is not point-wise (nothing to fit), a model with no
            norm to convert, or calibration inputs the model cannot take (the model is then left unchanged).

    Example:
        >>> model = timm.create_model("vit_tiny_patch16_224")
        >>> print(convert_norms(model, "derf"))  # 25 LayerNorms -> Derf
    """
    factory = get_norm_layer(to)  # raises on a bad spec before the model is touched
    fitting = fit is not None or forward is not None
    if fitting and not _is_pointwise(factory):
        raise ValueError(f"convert_norms: fit= fits point-wise norms (derf, dyt, ...), but {to!r} builds "
                         f"{getattr(factory, '__name__', factory)}, which has nothing to fit. Drop fit= or convert to "
                         "a point-wise norm.")
    report = ConversionReport(dry_run=dry_run)
    plan: list[tuple[str, nn.Module, _NormInfo]] = []
    for name, module in model.named_modules():
        info = _describe(module)
        if info is None:
            continue
        if include is not None and not _matches(name, module, include):
            continue
        if exclude is not None and _matches(name, module, exclude):
            continue
        if isinstance(info, str):
            report.skipped.append((name, info))
            continue
        plan.append((name, module, info))

    if fitting and not plan and not dry_run:
        raise ValueError(f"convert_norms: fit= was given but {type(model).__name__} has no LayerNorm/RMSNorm to "
                         f"convert{' (after include/exclude)' if include is not None or exclude is not None else ''}.")
    originals: dict[str, nn.Module] = {}
    for name, old, info in plan:
        param = next(old.parameters(), None)
        # An affine-free norm has no parameter to copy device/dtype from: take the model's.
        placed = param if param is not None else next(model.parameters(), None)
        factory_kwargs = {"affine": info.affine, "channels_first": info.channels_first}
        if placed is not None:
            factory_kwargs.update(device=placed.device, dtype=placed.dtype)
        if info.eps is not None:
            factory_kwargs["eps"] = info.eps
        new = factory(info.num_features, **factory_kwargs)
        report.replaced.append(Replacement(name, type(old).__name__, type(new).__name__, info.num_features))
        if dry_run:
            continue
        if copy_affine or fitting:
            for pname in ("weight", "bias"):
                src, dst = getattr(old, pname, None), getattr(new, pname, None)
                if isinstance(src, torch.Tensor) and isinstance(dst, torch.Tensor):
                    dst.copy_(src)
        frozen = param is not None and not any(p.requires_grad for p in old.parameters())
        if frozen:
            new.requires_grad_(False)
        new.train(old.training)
        _set_submodule(model, name, new)
        originals[name] = old
    if fitting and not dry_run:
        try:
            report.fit = fit_pointwise_norms(model, originals, fit, forward=forward, poor_threshold=poor_threshold)
        except BaseException:
            for name, old in originals.items():  # all or nothing: the model as it came in
                _set_submodule(model, name, old)
            raise
    return report


def _is_pointwise(factory: Callable[..., nn.Module]) -> bool:
    from derf_zoo.norms.layers import PointwiseNorm

    probe = factory(2)
    return isinstance(probe, PointwiseNorm)
