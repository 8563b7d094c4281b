"""Norm layers with one constructor signature, so any of them drops into any norm slot.

Every class takes ``(num_features, *, eps, affine, alpha_init, shift_init, channels_first, device, dtype)``.
Point-wise layers ignore ``eps``; normalizing layers ignore ``alpha_init``/``shift_init``. That is also
the call timm makes (``norm_layer(dim, eps=..., device=..., dtype=...)``), so every class works as a timm
``norm_layer``.

Parameter names and shapes follow the official Derf code (``alpha`` [1], ``shift`` [1], ``weight`` [C],
``bias`` [C]), so its state dicts load with ``strict=True``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from derf_zoo._validate import check_int, is_real
from derf_zoo.norms.functions import get_function
from derf_zoo.norms.kernels import check_kernel, pointwise_norm

__all__ = ["Derf", "DyT", "Identity", "LayerNorm", "PointwiseNorm", "RMSNorm"]

AlphaInit = float | Literal["auto"]
# Placeholder value of alpha while a layer waits for data calibration (alpha_init="auto").
_AUTO_ALPHA_PLACEHOLDER = 0.5


def _check_num_features(cls_name: str, num_features: Any) -> int:
    return check_int("num_features", num_features, 1, owner=cls_name, why="the size of the normalized dimension")


def _check_bool(owner: str, key: str, value: Any) -> bool:
    """A real bool only: ``bool("false")`` is True, so a string must never reach ``bool()`` unparsed."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {key} must be true or false, got {value!r}.")
    return value


def _check_alpha_init(owner: str, value: Any) -> AlphaInit:
    """``"auto"`` or a finite, non-zero real number (negative is fine: it mirrors the function)."""
    if isinstance(value, str) and value == "auto":
        return value
    if not is_real(value) or not math.isfinite(value) or value == 0:
        why = (
            "; alpha = 0 makes the layer constant: f(0 * x + shift) does not depend on x"
            if is_real(value) and value == 0
            else ""
        )
        raise ValueError(
            f"{owner}: alpha_init must be a finite, non-zero number or 'auto' (set from data by "
            f"calibrate_alpha), got {value!r}{why}."
        )
    return value


def _check_shift_init(owner: str, value: Any) -> float:
    if not is_real(value) or not math.isfinite(value):
        raise ValueError(f"{owner}: shift_init must be a finite number, got {value!r}.")
    return float(value)


def _check_eps(owner: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        also = " None is also accepted (the dtype's machine epsilon)." if allow_none else ""
        raise ValueError(f"{owner}: eps must be a finite number > 0, got {value!r}.{also}")
    return value


def _check_input(layer: nn.Module, x: Tensor) -> None:
    """Raise a ValueError naming the expected and actual channel count (cheap: shape checks only)."""
    dim, min_dims = (1, 2) if layer.channels_first else (-1, 1)
    if x.dim() >= min_dims and x.shape[dim] == layer.num_features:
        return
    where = "dimension 1 (channels first)" if layer.channels_first else "the last dimension"
    got = x.shape[dim] if x.dim() >= min_dims else "no such dimension"
    raise ValueError(
        f"{type(layer).__name__} expected {layer.num_features} features in {where}, "
        f"got {got} (input shape {tuple(x.shape)})."
    )


class PointwiseNorm(nn.Module):
    """``weight * f(alpha * x + shift) + bias``: a normalization-free replacement for LayerNorm.

    ``f`` comes from the function table (:mod:`derf_zoo.norms.functions`); no statistics are computed.

    Args:
        num_features: channel count C (last dimension, or dimension 1 with ``channels_first``).
        function: name of ``f`` in the table (``"derf"``, ``"isru"``, ...).
        eps: accepted for signature compatibility with LayerNorm and ignored.
        affine: learn per-channel ``weight`` (ones) and ``bias`` (zeros). ``False`` (DiT) has neither.
        alpha_init: initial value of the learnable scalar ``alpha``: a finite, non-zero number (0 would
            make the layer constant), or ``"auto"`` to set it from data with :func:`derf_zoo.calibrate_alpha`
            before training.
        shift_init: initial value of the learnable scalar ``shift``, a finite number (functions without a
            shift ignore it).
        channels_first: input is (N, C, ...) instead of (..., C).
        kernel: ``"auto" | "eager" | "fused" | "triton"``; None uses the global default
            (:func:`derf_zoo.norms.kernels.set_default_kernel`). All give the same numbers.

    Raises:
        ValueError: a bad ``num_features``, ``alpha_init`` or ``shift_init``, an ``affine`` or
            ``channels_first`` that is not a bool, or an unknown ``function`` or ``kernel``; the message names
            the value and what is accepted.
    """

    function: str = "derf"

    def __init__(
        self,
        num_features: int,
        *,
        function: str | None = None,
        eps: float | None = None,
        affine: bool = True,
        alpha_init: AlphaInit = 0.5,
        shift_init: float = 0.0,
        channels_first: bool = False,
        kernel: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_features = _check_num_features(owner, num_features)
        self.function = function or type(self).function
        self._fn = get_function(self.function)
        # Checked here as well as in the spec parser: a direct call (Derf(8, alpha_init=nan)) skips the parser.
        alpha_init = _check_alpha_init(owner, alpha_init)
        self.alpha_auto = alpha_init == "auto"
        self.alpha_init = _AUTO_ALPHA_PLACEHOLDER if self.alpha_auto else float(alpha_init)
        self.shift_init = _check_shift_init(owner, shift_init)
        self.affine = _check_bool(owner, "affine", affine)
        self.channels_first = _check_bool(owner, "channels_first", channels_first)
        self.kernel = check_kernel(kernel) if kernel is not None else None
        factory = {"device": device, "dtype": dtype}
        self.alpha = nn.Parameter(torch.empty(1, **factory))
        if self._fn.uses_shift:
            self.shift = nn.Parameter(torch.empty(1, **factory))
        else:
            self.register_parameter("shift", None)
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features, **factory))
            self.bias = nn.Parameter(torch.empty(num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.alpha_init)
        if self.shift is not None:
            nn.init.constant_(self.shift, self.shift_init)
        if self.affine:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        return pointwise_norm(
            x,
            self.alpha,
            self.shift,
            self.weight,
            self.bias,
            function=self.function,
            channels_first=self.channels_first,
            kernel=self.kernel,
        )

    def extra_repr(self) -> str:
        parts = [str(self.num_features)]
        if type(self) is PointwiseNorm:
            parts.append(f"function={self.function}")
        parts.append("alpha_init=auto" if self.alpha_auto else f"alpha_init={self.alpha_init}")
        if self.shift is not None:
            parts.append(f"shift_init={self.shift_init}")
        parts.append(f"affine={self.affine}")
        if self.channels_first:
            parts.append("channels_first=True")
        if self.kernel is not None:
            parts.append(f"kernel={self.kernel}")
        return ", ".join(parts)


class Derf(PointwiseNorm):
    """Dynamic erf: ``weight * erf(alpha * x + shift) + bias`` (arXiv 2512.10938, Eq. 9).

    Same arguments as :class:`PointwiseNorm`; ``alpha`` starts at 0.5 and ``shift`` at 0 as in the paper.
    """

    function = "derf"

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        kwargs.pop("function", None)
        super().__init__(num_features, **kwargs)


class DyT(PointwiseNorm):
    """Dynamic tanh: ``weight * tanh(alpha * x) + bias`` (arXiv 2503.10622). No shift parameter."""

    function = "dyt"

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        kwargs.pop("function", None)
        super().__init__(num_features, **kwargs)


class LayerNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension, with the norm-slot signature (eps defaults to timm's 1e-6).

    ``eps`` must be a finite number > 0 and ``affine``/``channels_first`` bools (ValueError otherwise);
    ``alpha_init``/``shift_init`` are accepted and ignored.
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-6,
        affine: bool = True,
        alpha_init: AlphaInit | None = None,
        shift_init: float | None = None,
        channels_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **_: Any,
    ) -> None:
        owner = type(self).__name__
        num_features = _check_num_features(owner, num_features)
        eps = _check_eps(owner, eps)
        affine = _check_bool(owner, "affine", affine)
        super().__init__(num_features, eps=eps, elementwise_affine=affine, device=device, dtype=dtype)
        self.num_features = num_features
        self.channels_first = _check_bool(owner, "channels_first", channels_first)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        if self.channels_first:
            x = x.movedim(1, -1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1) if self.channels_first else x


class RMSNorm(nn.Module):
    """Root-mean-square norm ``weight * x / sqrt(mean(x^2) + eps)`` with the norm-slot signature.

    ``eps`` must be a finite number > 0, or None for the dtype's machine epsilon (as ``torch.nn.RMSNorm``);
    ``affine``/``channels_first`` must be bools (ValueError otherwise).
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-6,
        affine: bool = True,
        alpha_init: AlphaInit | None = None,
        shift_init: float | None = None,
        channels_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **_: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.num_features = _check_num_features(owner, num_features)
        self.eps = _check_eps(owner, eps, allow_none=True)  # None: F.rms_norm uses the dtype's epsilon
        self.channels_first = _check_bool(owner, "channels_first", channels_first)
        if _check_bool(owner, "affine", affine):
            self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        if self.channels_first:
            x = x.movedim(1, -1)
        x = F.rms_norm(x, (self.num_features,), self.weight, self.eps)
        return x.movedim(-1, 1) if self.channels_first else x

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class Identity(nn.Module):
    """No normalization at all (the 'no norm' baseline); takes the norm-slot signature and no parameters."""

    def __init__(self, num_features: int, *, channels_first: bool = False, **_: Any) -> None:
        super().__init__()
        self.num_features = _check_num_features(type(self).__name__, num_features)
        self.channels_first = _check_bool(type(self).__name__, "channels_first", channels_first)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(self, x)
        return x

    def extra_repr(self) -> str:
        return str(self.num_features)
