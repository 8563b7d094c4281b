"""Data-calibrated alpha: set each point-wise norm's alpha so that ``alpha * std(input)`` hits a target.

Why: with the paper's alpha_init = 0.5 every point-wise norm shrinks the signal at initialisation and a
short schedule underfits. Measured on real digits (shared/PAPER.md §8), calibrating alpha to
``1 / std(input)`` is worth +11 points of top-1 over 0.5 on 45 epochs and brings Derf within seed noise
of LayerNorm on 135 epochs.

One forward pass does it: a pre-forward hook on every point-wise norm measures its input and sets alpha
before the layer runs, so each layer sees the already-calibrated layers before it (forward order).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from derf_zoo._validate import check_positive
from derf_zoo.norms.layers import PointwiseNorm

__all__ = ["CalibrationReport", "calibrate_alpha"]


@dataclass
class CalibrationReport:
    """What :func:`calibrate_alpha` set: per layer (qualified name) the input std and the new alpha.

    ``skipped_frozen`` names the layers left alone because their alpha is frozen (``requires_grad=False``).
    """

    target: float
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    skipped_frozen: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def alphas(self) -> dict[str, float]:
        return {name: alpha for name, _, alpha in self.rows}

    def __str__(self) -> str:
        if not self.rows:
            lines = ["calibrate_alpha: no point-wise norm was calibrated."]
        else:
            width = max(len(name) for name, _, _ in self.rows)
            lines = [
                f"calibrate_alpha (target alpha*std = {self.target:g}):",
                f"{'layer':<{width}}  {'input std':>10}  {'alpha':>8}",
            ]
            lines += [f"{name:<{width}}  {std:>10.4g}  {alpha:>8.4g}" for name, std, alpha in self.rows]
        if self.skipped_frozen:
            lines.append(
                f"left alone, alpha frozen (requires_grad=False; include_frozen=True calibrates them): "
                f"{', '.join(self.skipped_frozen)}"
            )
        return "\n".join(lines)


class _LayerInputError(ValueError):
    """A layer input calibrate_alpha cannot use (zero or non-finite std): its own error, not the model's."""


_PAIR_HINT = (
    "If the batch is an (inputs, targets) pair from a DataLoader, pass the inputs only: "
    "calibrate_alpha(model, batch[0]); for any other call give forward=lambda m: m(...)."
)


def _call_args(batch: Any) -> tuple[tuple[Any, ...], dict[str, Any], str]:
    """How the batch is passed to the model: positional args, keyword args, and how that call reads."""
    if isinstance(batch, Mapping):
        return (), dict(batch), "model(**batch)"
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        return tuple(batch), {}, "model(*batch)"
    return (batch,), {}, "model(batch)"


def _check_signature(model: nn.Module, batch: Any, args: tuple[Any, ...], kwargs: dict[str, Any], call: str) -> None:
    """Refuse a batch that ``model.forward`` cannot take, before any alpha is touched."""
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return  # no signature to check (a C extension, say): the call itself will tell
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        shape = f"a mapping with keys {sorted(kwargs)}" if kwargs else f"a {type(batch).__name__} of {len(args)} items"
        hint = _PAIR_HINT if len(args) >= 2 else "Give forward=lambda m: m(...) for a model called another way."
        raise ValueError(
            f"calibrate_alpha: the batch is {shape}, called as {call}, which {type(model).__name__}.forward "
            f"does not take ({err}). {hint}"
        ) from None


def _check_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse input tensors that would set alpha from the model instead of from data.

    A non-finite value makes every std downstream nan. A constant batch (all zeros, say) still gives the
    layers varying inputs, through the position embedding and the biases, so the calibration would run and
    set alphas that say nothing about the data: refused when every input tensor is constant (a constant
    attention mask next to real tokens is fine).
    """
    labels = ["the batch"] if len(args) == 1 and not kwargs else [f"batch[{i}]" for i in range(len(args))]
    named = [(label, t) for label, t in zip(labels, args)] + [(f"batch[{k!r}]", t) for k, t in kwargs.items()]
    tensors = [(label, t) for label, t in named if isinstance(t, Tensor)]
    if not tensors:
        return
    for label, t in tensors:
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            count = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"calibrate_alpha: {label} holds {count} non-finite value(s) (nan or inf) out of {t.numel()}; "
                "every std after them would be nan. Pass finite inputs (give forward=lambda m: m(...) for a "
                "model whose inputs are non-finite by design, such as an additive -inf mask)."
            )
    constant = []
    for label, t in tensors:
        if t.numel() == 0:
            constant.append(f"{label} is empty")
        elif bool((t == t.reshape(-1)[0]).all()):
            constant.append(f"every value is {t.reshape(-1)[0].item()!r} in {label} of shape {tuple(t.shape)}")
        else:
            return
    raise ValueError(
        f"calibrate_alpha: the input is constant ({'; '.join(constant)}). The layer inputs would then vary "
        "only through the model's position embedding and biases, and alpha would be set from those, not "
        "from data. Pass a batch of real inputs."
    )


def _check_target(target: Any) -> None:
    check_positive("target", target, owner="calibrate_alpha",
                   why="the value alpha * std(input) takes after calibration")


@torch.no_grad()
def calibrate_alpha(
    model: nn.Module,
    batch: Any,
    target: float = 1.0,
    *,
    only_auto: bool = False,
    include_frozen: bool = False,
    forward: Callable[[nn.Module], Any] | None = None,
) -> CalibrationReport:
    """Set every point-wise norm's alpha to ``target / std(its input)`` on one batch, in forward order.

    All or nothing: if anything fails part-way (a layer input with zero std, an error in the model, an
    interrupt), every alpha is put back as it was before the call.

    Args:
        model: any module containing :class:`~derf_zoo.norms.PointwiseNorm` layers.
        batch: the model *inputs* (not an ``(inputs, targets)`` pair): a tensor (``model(batch)``), a tuple
            (``model(*batch)``) or a dict (``model(**batch)``). It must not be constant (all zeros, say) nor
            hold nan/inf. Ignored, and not checked, when ``forward`` is given.
        target: the value of ``alpha * std(input)`` after calibration, a finite number > 0 (1.0 puts the
            input's std at the unit slope region of erf/tanh).
        only_auto: calibrate only layers built with ``alpha_init="auto"``.
        include_frozen: also calibrate layers whose alpha has ``requires_grad=False``; by default they are
            left alone (a frozen alpha was fixed on purpose) and listed in ``report.skipped_frozen``.
        forward: custom call, ``forward(model)``, for models called in another way.

    Returns:
        A :class:`CalibrationReport` with each layer's input std and new alpha.

    Raises:
        ValueError: ``target`` is not a finite number > 0; the batch does not fit ``model.forward`` (an
            ``(inputs, targets)`` pair, say), is constant or holds nan/inf; or a layer's input has zero or
            non-finite std. Nothing is changed then.

    Example:
        >>> x, y = next(iter(train_loader))
        >>> print(calibrate_alpha(model, x))  # the inputs only
    """
    _check_target(target)
    args, kwargs, call = _call_args(batch)
    if forward is None:
        _check_signature(model, batch, args, kwargs, call)
        _check_inputs(args, kwargs)
    report = CalibrationReport(target=target)
    layers = {}
    for name, m in model.named_modules():
        if not isinstance(m, PointwiseNorm) or (only_auto and not m.alpha_auto):
            continue
        if m.alpha.requires_grad or include_frozen:
            layers[name] = m
        else:
            report.skipped_frozen.append(name)
    if not layers:
        return report

    def hook(name: str, layer: PointwiseNorm, hook_args: tuple) -> None:
        if name in done:
            return  # a layer called twice keeps its first calibration
        std = float(hook_args[0].detach().float().std())
        if not math.isfinite(std) or std == 0.0:
            raise _LayerInputError(
                f"calibrate_alpha: the input of {name!r} has std {std}; cannot set alpha from it. "
                "Use a batch with more than one distinct value per layer, or a numeric alpha_init."
            )
        alpha = target / std
        layer.alpha.fill_(alpha)
        done.add(name)
        report.rows.append((name, std, alpha))

    done: set[str] = set()
    saved = {name: m.alpha.detach().clone() for name, m in layers.items()}
    was_training = {m: m.training for m in model.modules()}
    handles = [m.register_forward_pre_hook(lambda mod, a, n=name: hook(n, mod, a)) for name, m in layers.items()]
    try:
        model.eval()  # dropout and drop-path off: calibrate on the deterministic forward
        if forward is not None:
            forward(model)
        else:
            try:
                model(*args, **kwargs)
            except Exception as err:
                # The signature took the batch (forward(x, cond=None) binds an (x, y) pair) but the model did not.
                if len(args) >= 2 and not isinstance(err, _LayerInputError) and hasattr(err, "add_note"):  # 3.11+
                    err.add_note(f"calibrate_alpha called {call} with {len(args)} items. {_PAIR_HINT}")
                raise
    except BaseException:
        for name, m in layers.items():  # all or nothing: no half-calibrated model
            m.alpha.copy_(saved[name])
        raise
    finally:
        for h in handles:
            h.remove()
        for m, mode in was_training.items():
            m.training = mode
    return report
