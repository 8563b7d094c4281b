"""Fit point-wise norms to the normalising layers they replace: pretrained LayerNorm weights become Derf weights.

A converted model that keeps the pretrained ``weight``/``bias`` but starts every Derf at alpha 0.5 has lost most of
its accuracy (a LayerNorm ViT on Fashion-MNIST drops from 86 % to 27 %), because ``erf(0.5 x)`` is not
``(x - mean) / std``. Fitting each Derf to its LayerNorm's input -> output map on real activations recovers most of
it before any training, and a short distillation the rest (issue 17's table, ``benchmarks/results/convert.md``).

The fit, per layer, minimises ``sum ||weight * f(alpha * x + shift) + bias - reference(x)||^2`` over the calibration
tokens. For a fixed ``(alpha, shift)`` the best per-channel ``weight`` and ``bias`` are an ordinary least-squares
line per channel, in closed form; so only the two scalars are searched (a variable-projection fit, Golub & Pereyra
1973): a coarse log-grid over alpha around ``1 / std(x)`` and over shift, then L-BFGS on the projected objective, on
a fixed random subset of the tokens; then ``weight`` and ``bias`` in closed form on all of them. Affine-free layers
(DiT) fit alpha and shift only.

Layers are fitted in forward order in ONE forward pass: a pre-forward hook on each point-wise norm fits it to its
reference on the input it receives, so every layer sees the already-fitted layers before it (errors upstream are
compensated downstream), and the calibration costs one forward pass plus the fits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo.norms.layers import PointwiseNorm

__all__ = ["FitError", "FitReport", "LayerFit", "calibration_call", "fit_pointwise_norms", "merge_calls"]

#: elements (tokens x channels) the (alpha, shift) search runs on; the closed-form weight/bias use every token.
SEARCH_ELEMENTS = 1 << 21
#: elements (tokens x channels) the report's before/after errors are measured on.
MEASURE_ELEMENTS = 1 << 23
#: tokens per chunk of the closed-form sums (bounds the float64 temporaries on large calibration sets)
_CHUNK = 65536
#: a layer whose fit leaves more than this fraction of its reference's variance unexplained is reported as poor.
POOR_FIT = 0.1


@dataclass(frozen=True)
class LayerFit:
    """How well one layer was fitted.

    Attributes:
        name: qualified module name.
        before: unexplained fraction of the reference output's per-channel variance with the layer's parameters
            before the fit (``sum (out - ref)^2 / sum (ref - mean_c(ref))^2``; 0 is exact, 1 is no better than the
            per-channel mean), measured on a fixed subset of up to ``MEASURE_ELEMENTS`` tokens x channels.
        after: the same after the fit.
        worst_channel: the channel with the largest unexplained fraction after the fit, and that fraction.
        alpha: fitted alpha; ``shift``: fitted shift (None for functions without one).
        tokens: calibration tokens the layer saw.
        folded: an affine-free layer whose fitted per-channel weight and bias were folded downstream (the model's
            ``norm_folds()``: DiT folds them into the adaLN shift and the next linear layer).
    """

    name: str
    before: float
    after: float
    worst_channel: tuple[int, float]
    alpha: float
    shift: float | None
    tokens: int
    folded: bool = False


@dataclass
class FitReport:
    """What :func:`fit_pointwise_norms` (or ``convert_norms(..., fit=...)``) fitted, layer by layer, in forward order.

    Attributes:
        layers: one :class:`LayerFit` per fitted layer, in the order the forward pass reached them.
        not_reached: layers the calibration forward never called (left with their previous parameters).
        poor_threshold: the unexplained fraction above which a layer counts as poorly fitted.
    """

    layers: list[LayerFit] = field(default_factory=list)
    not_reached: list[str] = field(default_factory=list)
    poor_threshold: float = POOR_FIT

    def __len__(self) -> int:
        return len(self.layers)

    def poor(self) -> list[str]:
        """Names of the layers whose fit leaves more than ``poor_threshold`` of the variance unexplained."""
        return [f.name for f in self.layers if f.after > self.poor_threshold]

    def __str__(self) -> str:
        if not self.layers:
            return "fit: no point-wise norm was fitted."
        w = max(len(f.name) for f in self.layers)
        lines = [f"fit of {len(self.layers)} layer(s) (unexplained variance of the reference output, 0 = exact):",
                 f"  {'layer':<{w}}  {'before':>8}  {'after':>8}  {'worst ch':>14}  {'alpha':>8}  {'shift':>8}"]
        for f in self.layers:
            shift = "-" if f.shift is None else f"{f.shift:.3g}"
            worst = f"{f.worst_channel[0]}: {f.worst_channel[1]:.3f}"
            lines.append(f"  {f.name:<{w}}  {f.before:>8.4f}  {f.after:>8.4f}  {worst:>14}  {f.alpha:>8.4g}"
                         f"  {shift:>8}{'  (affine folded downstream)' if f.folded else ''}")
        if self.not_reached:
            lines.append(f"  not reached by the calibration forward (left as they were): {', '.join(self.not_reached)}")
        poor = self.poor()
        if poor:
            lines.append(f"  poor fit (> {self.poor_threshold:g} unexplained): {', '.join(poor)}; consider keeping "
                         f"them as they were (convert_norms(..., exclude=[...])) or distilling.")
        return "\n".join(lines)


# ---- calibration inputs --------------------------------------------------------------------------------------


def _one_call(batch: Any) -> tuple[tuple, dict[str, Any]]:
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, tuple):
        return batch, {}
    return (batch,), {}


def _concat(values: Sequence[Any], where: str) -> Any:
    first = values[0]
    tensors = [isinstance(v, Tensor) for v in values]
    if any(tensors) and not all(tensors):
        raise ValueError(f"fit: the calibration batches disagree at {where}: a tensor in some batches, "
                         f"{type(values[tensors.index(False)]).__name__} in others.")
    if not isinstance(first, Tensor):
        return first  # a flag, a generator: the first batch's (only tensors are data)
    if not all(isinstance(v, Tensor) and v.shape[1:] == first.shape[1:] for v in values):
        shapes = [tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__ for v in values]
        raise ValueError(f"fit: the calibration batches disagree at {where}: shapes {shapes} cannot be "
                         "concatenated along the batch dimension.")
    return torch.cat(list(values))


def merge_calls(calls: Sequence[tuple[tuple, dict[str, Any]]]) -> tuple[tuple, dict[str, Any]]:
    """One ``(args, kwargs)`` call from several batches' calls: tensors concatenated along dimension 0, other
    arguments taken from the first batch.

    Raises:
        ValueError: no call, calls of different forms, or tensors whose shapes do not line up.
    """
    if not calls:
        raise ValueError("fit: the calibration inputs are empty (an iterable with no batch).")
    forms = {(len(a), tuple(sorted(k))) for a, k in calls}
    if len(forms) != 1:
        raise ValueError(f"fit: the calibration batches do not all have the same form: {sorted(forms)}.")
    args = tuple(_concat([a[i] for a, _ in calls], f"argument {i}") for i in range(len(calls[0][0])))
    kwargs = {key: _concat([k[key] for _, k in calls], f"keyword {key!r}") for key in calls[0][1]}
    return args, kwargs


def _describe_input(value: Any) -> str:
    return f"tensor {tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value).__name__


def calibration_call(inputs: Any) -> tuple[tuple, dict[str, Any]]:
    """The one model call that holds all calibration ``inputs``: ``(args, kwargs)``.

    Args:
        inputs: a tensor (``model(inputs)``), a tuple of model arguments (``model(*inputs)``), a dict of keyword
            arguments (``model(**inputs)``), or a list / iterable (a DataLoader, a generator) of such batches,
            concatenated along dimension 0 (the fit sees every layer's input for all of them at once).

    Raises:
        ValueError: empty inputs, or batches whose arguments do not line up.
    """
    if isinstance(inputs, (Tensor, tuple, Mapping)):
        return _one_call(inputs)
    if not isinstance(inputs, Iterable) or isinstance(inputs, (str, bytes)):
        raise ValueError(f"fit: calibration inputs must be a tensor, a tuple of model arguments, a dict of keyword "
                         f"arguments or an iterable of such batches, got {type(inputs).__name__}.")
    return merge_calls([_one_call(b) for b in inputs])


class FitError(ValueError):
    """A layer the fit cannot handle (its input or its reference's output), as opposed to the model's own error."""


# ---- the fit of one layer --------------------------------------------------------------------------------------


def _channels_last(layer: PointwiseNorm, x: Tensor) -> Tensor:
    x = x.movedim(1, -1) if layer.channels_first else x
    return x.reshape(-1, layer.num_features).float()


def _unexplained(out: Tensor, ref: Tensor) -> tuple[float, Tensor]:
    """Total and per-channel unexplained fraction of ``ref``'s per-channel variance (float64 sums)."""
    err = (out.double() - ref.double()).pow(2).sum(0)
    var = (ref.double() - ref.double().mean(0)).pow(2).sum(0)
    tiny = torch.finfo(torch.float64).tiny
    return float(err.sum() / var.sum().clamp_min(tiny)), err / var.clamp_min(tiny)


class _Projected:
    """The objective of (log alpha, shift) once weight and bias are solved in closed form (variable projection)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, affine: bool) -> None:
        self.fn, self.x, self.y, self.affine = fn, x, y, affine
        self.y_centered = y - y.mean(0)
        self.scale = float(self.y_centered.pow(2).sum().clamp_min(1e-30))

    def __call__(self, log_alpha: Tensor, shift: Tensor) -> Tensor:
        u = self.fn(log_alpha.exp() * self.x + shift)
        if not self.affine:
            return (u - self.y).pow(2).sum() / self.scale
        uc = u - u.mean(0)
        explained = (uc * self.y_centered).sum(0).pow(2) / uc.pow(2).sum(0).clamp_min(1e-12)
        return 1.0 - explained.sum() / self.scale


def _search(objective: _Projected, alpha0: float, center: float, uses_shift: bool) -> tuple[float, float]:
    """Best (alpha, shift): a log-grid over alpha, then shift at the best alphas, then L-BFGS from the best point."""
    def value(log_alpha: float, shift: float) -> float:
        with torch.no_grad():
            v = float(objective(torch.tensor(log_alpha), torch.tensor(shift)))
        return v if math.isfinite(v) else math.inf

    def shift_at(log_alpha: float, offset: float) -> float:
        # shift = offset - alpha * mean(x): offset 0 centres the input of f on the data's mean
        return (offset - math.exp(log_alpha) * center) if uses_shift else 0.0

    grid = [math.log(alpha0) + t for t in torch.linspace(math.log(1 / 16), math.log(16), 17).tolist()]
    scored = sorted((value(a, shift_at(a, 0.0)), a, 0.0) for a in grid)
    if uses_shift:
        offsets = torch.linspace(-1.5, 1.5, 7).tolist()
        scored = sorted(scored[:1] + [(value(a, shift_at(a, o)), a, o) for _, a, _ in scored[:2] for o in offsets])
    best_value, log_alpha, offset = scored[0]
    start = (log_alpha, shift_at(log_alpha, offset))

    params = [torch.tensor(start[0], requires_grad=True), torch.tensor(start[1], requires_grad=uses_shift)]
    optimizer = torch.optim.LBFGS([p for p in params if p.requires_grad], lr=1.0, max_iter=20,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = objective(*params)
        loss.backward()
        return loss

    try:
        with torch.enable_grad():  # the caller runs under no_grad; the refinement needs d objective / d params
            optimizer.step(closure)
    except RuntimeError:  # a line search that hits a non-finite value: keep the grid's point
        return math.exp(start[0]), start[1]
    refined = value(float(params[0]), float(params[1]))
    if refined < best_value:
        return math.exp(float(params[0])), float(params[1])
    return math.exp(start[0]), start[1]


@torch.no_grad()
def _closed_form(layer: PointwiseNorm, fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, alpha: float,
                 shift: float) -> tuple[Tensor, Tensor]:
    """Per-channel least-squares weight and bias of ``y ~ weight * f(alpha * x + shift) + bias`` on every token."""
    n = x.shape[0]
    su = torch.zeros(layer.num_features, dtype=torch.float64, device=x.device)
    suu, sy, suy = su.clone(), su.clone(), su.clone()
    for start in range(0, n, _CHUNK):  # float32 within a chunk, float64 across chunks: accurate and fast
        u = fn(alpha * x[start:start + _CHUNK] + shift)
        yy = y[start:start + _CHUNK]
        su += u.sum(0).double()
        suu += u.pow(2).sum(0).double()
        sy += yy.sum(0).double()
        suy += (u * yy).sum(0).double()
    var_u = suu / n - (su / n).pow(2)
    cov = suy / n - (su / n) * (sy / n)
    # A channel whose f(...) is constant on the data carries no signal: weight 0, bias = the reference's mean.
    weight = torch.where(var_u > 1e-12, cov / var_u.clamp_min(1e-12), torch.zeros_like(cov))
    bias = sy / n - weight * su / n
    return weight, bias


def _fit_layer(name: str, layer: PointwiseNorm, x_in: Tensor, reference: nn.Module, generator: torch.Generator,
               foldable: bool) -> tuple[LayerFit, tuple[Tensor, Tensor] | None]:  # fmt: skip
    """Fit ``layer`` to ``reference`` on ``x_in``; with ``foldable`` (an affine-free layer whose model can fold an
    affine downstream) also the per-channel weight and bias to fold, returned beside the report."""
    y_out = reference(x_in)
    if y_out.shape != x_in.shape:
        raise FitError(f"fit: the reference of {name!r} ({type(reference).__name__}) maps {tuple(x_in.shape)} to "
                       f"{tuple(y_out.shape)}; a norm to fit must keep the shape.")
    x, y = _channels_last(layer, x_in), _channels_last(layer, y_out)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise FitError(f"fit: the input of {name!r} or its reference's output holds nan/inf; cannot fit it.")
    fn = layer._fn.fn
    # The report's errors are measured on a fixed subset of the tokens (all of them for small calibration sets):
    # measuring on every token of a large set costs more than the fit.
    order = torch.randperm(x.shape[0], generator=generator)
    measured = order[: max(1024, MEASURE_ELEMENTS // layer.num_features)]
    x_m, y_m = x[measured], y[measured]
    before, _ = _unexplained(layer(x_m), y_m)  # (tokens, C): dimension 1 is the channel either way
    rows = max(256, SEARCH_ELEMENTS // layer.num_features)
    pick = order[:rows]
    std = float(x.std())
    if not math.isfinite(std) or std == 0.0:
        raise FitError(f"fit: the input of {name!r} has std {std}; cannot fit alpha to it.")
    with_affine = layer.affine or foldable
    alpha, shift = _search(_Projected(fn, x[pick], y[pick], with_affine), 1.0 / std, float(x.mean()),
                           layer.shift is not None)
    layer.alpha.fill_(alpha)
    if layer.shift is not None:
        layer.shift.fill_(shift)
    affine = None
    out = layer(x_m)
    if with_affine:
        weight, bias = _closed_form(layer, fn, x, y, alpha, shift)
        if layer.affine:
            layer.weight.copy_(weight.to(layer.weight.dtype))
            layer.bias.copy_(bias.to(layer.bias.dtype))
            out = layer(x_m)
        else:
            # A zero weight cannot be folded (it would divide the adaLN shift by 0): keep such channels unscaled.
            keep = weight.abs() < 1e-3
            weight = torch.where(keep, torch.ones_like(weight), weight)
            bias = torch.where(keep, torch.zeros_like(bias), bias)
            affine = (weight.float(), bias.float())
            out = out * affine[0].to(out) + affine[1].to(out)
    after, per_channel = _unexplained(out, y_m)
    worst = int(per_channel.argmax())
    fit = LayerFit(name, before, after, (worst, float(per_channel[worst])), alpha,
                   shift if layer.shift is not None else None, x.shape[0], folded=affine is not None)
    return fit, affine


def _apply_affine(layer: PointwiseNorm, affine: tuple[Tensor, Tensor]) -> Callable[..., Tensor]:
    """A forward hook giving the rest of the calibration pass ``weight * out + bias`` (what the fold will make
    exact), so the layers after a folded one are fitted on the activations of the final model."""
    weight, bias = affine

    def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        if layer.channels_first:
            view = (1, -1) + (1,) * (out.dim() - 2)
            return out * weight.to(out).view(view) + bias.to(out).view(view)
        return out * weight.to(out) + bias.to(out)

    return hook


# ---- the pass ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def fit_pointwise_norms(
    model: nn.Module,
    references: Mapping[str, nn.Module],
    inputs: Any = None,
    *,
    forward: Callable[[nn.Module], Any] | None = None,
    seed: int = 0,
    poor_threshold: float = POOR_FIT,
) -> FitReport:
    """Fit every point-wise norm of ``model`` named in ``references`` to its reference module, in forward order.

    Each :class:`~derf_zoo.norms.PointwiseNorm` at a name in ``references`` gets the alpha, shift, weight and bias
    (alpha and shift only without affine) that best reproduce ``references[name](x)`` on the inputs ``x`` it
    receives in one forward pass of ``model`` on ``inputs`` (so layers after it see its fitted output). All or
    nothing: on any error every fitted parameter is put back. Runs in eval mode and restores each module's mode.
    Deterministic for a given ``seed`` (the token subset of the search).

    Args:
        model: the model holding the point-wise norms (changed in place).
        references: ``{qualified name: module}``: what each norm should reproduce, typically the LayerNorm or
            RMSNorm it replaced (:func:`derf_zoo.convert_norms` keeps them) or the teacher's norm of the same name.
        inputs: calibration inputs, see :func:`calibration_call`; ignored when ``forward`` is given.
        forward: custom call ``forward(model)`` for models called another way.
        seed: seed of the token subset the (alpha, shift) search uses.
        poor_threshold: unexplained fraction above which the report flags a layer.

    Returns:
        A :class:`FitReport`: per layer the unexplained variance before and after, the worst channel, alpha, shift.

    Raises:
        ValueError: a name in ``references`` that is not a point-wise norm of ``model``, no inputs, inputs the
            model cannot take, or a layer input with zero std or nan/inf.
    """
    if not references:
        raise ValueError("fit: no layer to fit (the model has no norm that was converted to a point-wise norm).")
    layers: dict[str, PointwiseNorm] = {}
    for name in references:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        if not isinstance(module, PointwiseNorm):
            found = [n for n, m in model.named_modules() if isinstance(m, PointwiseNorm)][:5]
            raise ValueError(f"fit: {name!r} is not a point-wise norm of {type(model).__name__} (got "
                             f"{type(module).__name__ if module is not None else 'no such module'}); point-wise "
                             f"norms it has: {found or 'none'}.")
        layers[name] = module
    if forward is None:
        if inputs is None:
            raise ValueError("fit: give calibration inputs (a batch of real model inputs) or forward=.")
        args, kwargs = calibration_call(inputs)
        described = ", ".join([*(_describe_input(a) for a in args), *(f"{k}={_describe_input(v)}"
                                                                     for k, v in kwargs.items())])  # fmt: skip

        def forward(m: nn.Module) -> Any:
            try:
                return m(*args, **kwargs)
            except FitError:
                raise
            except Exception as err:  # the model cannot take these inputs: say which call failed, keep the cause
                raise ValueError(f"fit: {type(m).__name__} could not be called with the calibration inputs "
                                 f"({described}): {type(err).__name__}: {err}. Pass the model's inputs (not an "
                                 "(inputs, targets) pair), or forward=lambda m: m(...).") from err

    report = FitReport(poor_threshold=poor_threshold)
    generator = torch.Generator().manual_seed(seed)
    # An affine-free norm (DiT) can still get a fitted per-channel affine when its model says where to fold it.
    folds = model.norm_folds() if callable(getattr(model, "norm_folds", None)) else {}
    folds = {n: f for n, f in folds.items() if n in layers and not layers[n].affine}
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}  # all or nothing, folds included
    modes = {m: m.training for module in (model, *references.values()) for m in module.modules()}
    done: set[str] = set()
    affines: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []

    def hook(name: str, layer: PointwiseNorm, args: tuple) -> None:
        if name in done:
            return  # a layer called twice keeps its first fit
        done.add(name)
        fit, affine = _fit_layer(name, layer, args[0].detach(), references[name], generator, name in folds)
        report.layers.append(fit)
        if affine is not None:
            affines[name] = affine
            handles.append(layer.register_forward_hook(_apply_affine(layer, affine)))

    handles += [m.register_forward_pre_hook(lambda mod, a, n=name: hook(n, mod, a)) for name, m in layers.items()]
    try:
        model.eval()
        for ref in references.values():
            ref.eval()
        forward(model)
        for h in handles:
            h.remove()
        for name, (weight, bias) in affines.items():
            folds[name](weight, bias)
    except BaseException:
        model.load_state_dict(saved)
        raise
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    report.not_reached = [name for name in layers if name not in done]
    return report
