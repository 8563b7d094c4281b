"""The table of point-wise functions a normalization-free layer can apply.

Every point-wise norm computes ``weight * f(alpha * x + shift) + bias``. This module holds ``f`` for
Derf, DyT and every candidate of the paper's function search (arXiv 2512.10938, Tab. 7 and App. B),
with its derivative ``df/du`` (used by the fused backward, which recomputes from ``x``), a readable
formula, and the paper's ImageNet ViT-B top-1 where one was reported.

One table, no class per function: adding a function is adding one row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from derf_zoo._validate import unknown_name_error

__all__ = ["FUNCTIONS", "PointwiseFunction", "get_function"]

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
# sqrt and the 2/3 power have an infinite slope at 0. Inputs closer to 0 than this are treated as 0 by
# both f (through the clamp) and df, so the eager and fused paths agree and no gradient is ever inf/nan.
_SINGULAR_EPS = 1e-12


@dataclass(frozen=True)
class PointwiseFunction:
    """One row of the function table.

    Attributes:
        name: registry name of the norm that uses this function (``"derf"``, ``"isru"``, ...).
        fn: ``f(u)``, written with differentiable torch ops (the eager path autograds through it).
        grad: ``df/du`` in closed form (the fused path's backward).
        formula: human-readable ``f(u)``.
        group: the paper's family for this function (App. B).
        uses_shift: whether the layer has the learnable scalar ``shift`` (DyT does not).
        vit_b_top1: ImageNet-1K ViT-B top-1 reported in the paper's Tab. 7 (None if not reported).
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    formula: str
    group: str
    uses_shift: bool = True
    vit_b_top1: float | None = None


def _clip_mask(value: Tensor) -> Tensor:
    """1 where ``clamp(value, -1, 1)`` passes the gradient through (torch's convention: inclusive)."""
    return (value.abs() <= 1).to(value.dtype)


def _sign(u: Tensor) -> Tensor:
    return torch.sign(u)


def _root_abs(u: Tensor) -> Tensor:
    return u.abs().clamp_min(_SINGULAR_EPS).sqrt()


def _exproot(u: Tensor) -> Tensor:
    return _sign(u) * (1 - torch.exp(-_root_abs(u)))


def _exproot_grad(u: Tensor) -> Tensor:
    r = _root_abs(u)
    return torch.where(u.abs() >= _SINGULAR_EPS, torch.exp(-r) / (2 * r), torch.zeros_like(u))


def _power23(u: Tensor) -> Tensor:
    return _sign(u) * u.abs().clamp_min(_SINGULAR_EPS).pow(2.0 / 3.0)


def _power23_grad(u: Tensor) -> Tensor:
    a = u.abs()
    inside = (a >= _SINGULAR_EPS) & (_power23(u).abs() <= 1)
    return torch.where(inside, (2.0 / 3.0) * a.clamp_min(_SINGULAR_EPS).pow(-1.0 / 3.0), torch.zeros_like(u))


def _satursin(u: Tensor) -> Tensor:
    return torch.sin(u.clamp(-math.pi / 2, math.pi / 2))


def _satursin_grad(u: Tensor) -> Tensor:
    # cos of the clipped u, as eager's autograd through the clip computes it: cos(+-inf) would be NaN, and NaN
    # times the zero mask stays NaN where eager's gradient is 0.
    return torch.cos(u.clamp(-math.pi / 2, math.pi / 2)) * (u.abs() <= math.pi / 2).to(u.dtype)


def _logsign(u: Tensor) -> Tensor:
    return _sign(u) * torch.log1p(u.abs())


def _logquad(u: Tensor) -> Tensor:
    return _sign(u) * torch.log1p(u * u)


def _saturlog(u: Tensor) -> Tensor:
    log = torch.log1p(u.abs())
    return _sign(u) * log / (log + 1)


def _saturlog_grad(u: Tensor) -> Tensor:
    a = u.abs()
    log = torch.log1p(a)
    return 1 / ((log + 1) ** 2 * (a + 1))


def _relsign(u: Tensor) -> Tensor:
    return u / (torch.sqrt(u * u + 1) + 1)


def _relsign_grad(u: Tensor) -> Tensor:
    s = torch.sqrt(u * u + 1)
    return 1 / (s * (s + 1))


def _tanh_grad(u: Tensor) -> Tensor:
    t = torch.tanh(u)
    return 1 - t * t


_ROWS = [
    PointwiseFunction(
        "derf", torch.erf, lambda u: _TWO_OVER_SQRT_PI * torch.exp(-u * u), "erf(u)", "natural", vit_b_top1=82.8
    ),
    PointwiseFunction("dyt", torch.tanh, _tanh_grad, "tanh(u), u = alpha*x (no shift)", "natural", False, 82.5),
    PointwiseFunction("tanh", torch.tanh, _tanh_grad, "tanh(u) (DyT with a shift)", "natural", vit_b_top1=82.6),
    PointwiseFunction(
        "arctan",
        lambda u: (2 / math.pi) * torch.atan(u),
        lambda u: (2 / math.pi) / (1 + u * u),
        "(2/pi)*arctan(u)",
        "natural",
        vit_b_top1=82.4,
    ),
    PointwiseFunction("satursin", _satursin, _satursin_grad, "sin(clip(u, -pi/2, pi/2))", "transformed", True, 82.6),
    PointwiseFunction(
        "expsign",
        lambda u: _sign(u) * (1 - torch.exp(-u.abs())),
        lambda u: torch.exp(-u.abs()),
        "sign(u)*(1 - exp(-|u|))",
        "transformed",
        vit_b_top1=82.2,
    ),
    PointwiseFunction("exproot", _exproot, _exproot_grad, "sign(u)*(1 - exp(-sqrt|u|))", "transformed", True, 82.4),
    PointwiseFunction("relsign", _relsign, _relsign_grad, "u/(sqrt(u^2+1) + 1)", "transformed", vit_b_top1=82.3),
    PointwiseFunction(
        "isru",
        lambda u: u * torch.rsqrt(u * u + 1),
        lambda u: torch.rsqrt(u * u + 1) ** 3,
        "u/sqrt(u^2+1)",
        "transformed",
        vit_b_top1=82.3,
    ),
    PointwiseFunction(
        "cubsign",
        lambda u: u**3 / (u.abs() ** 3 + 1),
        lambda u: 3 * u * u / (u.abs() ** 3 + 1) ** 2,
        "u^3/(|u|^3 + 1)",
        "transformed",
        vit_b_top1=81.4,
    ),
    PointwiseFunction(
        "logsign_clip",
        lambda u: _logsign(u).clamp(-1, 1),
        lambda u: _clip_mask(_logsign(u)) / (1 + u.abs()),
        "clip(sign(u)*ln(|u|+1), -1, 1)",
        "clipped",
        vit_b_top1=82.4,
    ),
    PointwiseFunction(
        "logquad_clip",
        lambda u: _logquad(u).clamp(-1, 1),
        lambda u: _clip_mask(_logquad(u)) * 2 * u.abs() / (1 + u * u),
        "clip(sign(u)*ln(u^2+1), -1, 1)",
        "clipped",
        vit_b_top1=82.2,
    ),
    PointwiseFunction(
        "power23_clip",
        lambda u: _power23(u).clamp(-1, 1),
        _power23_grad,
        "clip(sign(u)*|u|^(2/3), -1, 1)",
        "clipped",
        vit_b_top1=82.1,
    ),
    PointwiseFunction(
        "linear_clip", lambda u: u.clamp(-1, 1), _clip_mask, "clip(u, -1, 1)", "clipped", vit_b_top1=82.3
    ),
    PointwiseFunction(
        "arcsinh_clip",
        lambda u: torch.asinh(u).clamp(-1, 1),
        lambda u: _clip_mask(torch.asinh(u)) * torch.rsqrt(u * u + 1),
        "clip(arcsinh(u), -1, 1)",
        "clipped",
        vit_b_top1=82.5,
    ),
    PointwiseFunction(
        "smoothsign",
        lambda u: u / (1 + u.abs()),
        lambda u: 1 / (1 + u.abs()) ** 2,
        "u/(1+|u|)",
        "ratio",
        vit_b_top1=82.4,
    ),
    PointwiseFunction(
        "saturlog", _saturlog, _saturlog_grad, "sign(u)*L/(L+1), L = ln(|u|+1)", "ratio", vit_b_top1=81.8
    ),
]

FUNCTIONS: dict[str, PointwiseFunction] = {row.name: row for row in _ROWS}


def get_function(name: str) -> PointwiseFunction:
    """Return the table row for ``name`` or raise a ValueError listing the valid names."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise unknown_name_error("point-wise function", name, FUNCTIONS) from None
