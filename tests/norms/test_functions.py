"""Every point-wise function against its closed form, written here independently with Python's math."""

import math

import pytest
import torch

from derf_zoo.norms import FUNCTIONS, PointwiseNorm, get_norm_layer


def _sign(u):
    return (u > 0) - (u < 0)


def _clip(v):
    return max(-1.0, min(1.0, v))


# f(u) for one float, from the paper's formulas (shared/PAPER.md §1.4), not from derf_zoo's table.
CLOSED_FORM = {
    "derf": math.erf,
    "dyt": math.tanh,
    "tanh": math.tanh,
    "arctan": lambda u: 2 / math.pi * math.atan(u),
    "satursin": lambda u: math.sin(max(-math.pi / 2, min(math.pi / 2, u))),
    "expsign": lambda u: _sign(u) * (1 - math.exp(-abs(u))),
    "exproot": lambda u: _sign(u) * (1 - math.exp(-math.sqrt(abs(u)))),
    "relsign": lambda u: u / (math.sqrt(u * u + 1) + 1),
    "isru": lambda u: u / math.sqrt(u * u + 1),
    "cubsign": lambda u: u**3 / (abs(u) ** 3 + 1),
    "logsign_clip": lambda u: _clip(_sign(u) * math.log(abs(u) + 1)),
    "logquad_clip": lambda u: _clip(_sign(u) * math.log(u * u + 1)),
    "power23_clip": lambda u: _clip(_sign(u) * abs(u) ** (2 / 3)),
    "linear_clip": _clip,
    "arcsinh_clip": lambda u: _clip(math.asinh(u)),
    "smoothsign": lambda u: u / (1 + abs(u)),
    "saturlog": lambda u: _sign(u) * math.log(abs(u) + 1) / (math.log(abs(u) + 1) + 1),
}

# zero, the linear region, both saturations, negatives
POINTS = [0.0, 1e-3, -0.3, 0.7, -1.5, 2.5, -4.0, 9.0, -40.0]
# (alpha, shift): the default, a non-zero shift, a negative alpha
SETTINGS = [(0.5, 0.0), (1.3, 0.25), (-0.8, -0.4)]


def test_table_covers_the_papers_search_and_nothing_else():
    assert set(FUNCTIONS) == set(CLOSED_FORM)


@pytest.mark.parametrize("name", sorted(CLOSED_FORM))
@pytest.mark.parametrize("alpha,shift", SETTINGS)
@pytest.mark.parametrize("kernel", ["eager", "fused"])
def test_layer_equals_closed_form(name, alpha, shift, kernel):
    layer = get_norm_layer(name)(len(POINTS), kernel=kernel).double()
    weight = torch.linspace(0.5, 2.0, len(POINTS), dtype=torch.float64)
    bias = torch.linspace(-1.0, 1.0, len(POINTS), dtype=torch.float64)
    with torch.no_grad():
        layer.alpha.fill_(alpha)
        if layer.shift is not None:
            layer.shift.fill_(shift)
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    x = torch.tensor(POINTS, dtype=torch.float64)
    used_shift = shift if FUNCTIONS[name].uses_shift else 0.0
    expected = [
        w * CLOSED_FORM[name](alpha * p + used_shift) + b for p, w, b in zip(POINTS, weight.tolist(), bias.tolist())
    ]
    torch.testing.assert_close(
        layer(x[None]).squeeze(0), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_closed_form_derivative_matches_autograd(name):
    # Away from the points where a clipped function has a kink, where either side is a valid subgradient.
    u = torch.cat([torch.linspace(-6, 6, 1201, dtype=torch.float64), torch.tensor([1e-6, -1e-6], dtype=torch.float64)])
    row = FUNCTIONS[name]
    kinks = torch.tensor(
        [
            0.0,
            1.0,
            -1.0,
            math.pi / 2,
            -math.pi / 2,
            math.e - 1,
            1 - math.e,
            math.sinh(1),
            -math.sinh(1),
            math.sqrt(math.e - 1),
            -math.sqrt(math.e - 1),
        ],
        dtype=torch.float64,
    )
    u = u[(u[:, None] - kinks[None]).abs().min(1).values > 1e-3]
    u.requires_grad_(True)
    (auto,) = torch.autograd.grad(row.fn(u).sum(), u)
    torch.testing.assert_close(row.grad(u.detach()), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("kernel", ["eager", "fused"])
def test_gradcheck_every_parameter(name, kernel):
    layer = PointwiseNorm(5, function=name, alpha_init=0.9, shift_init=0.15, kernel=kernel).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    # Keep u = alpha*x + shift away from kinks and the singular slope of sqrt/cbrt at 0.
    x = torch.tensor([[-2.9, -1.3, -0.37, 0.45, 1.7], [0.23, -0.61, 2.2, -3.3, 0.91]], dtype=torch.float64)
    x.requires_grad_(True)
    params = [p for p in (layer.alpha, layer.shift, layer.weight, layer.bias) if p is not None]

    def f(x, *ps):
        names = [n for n in ("alpha", "shift", "weight", "bias") if getattr(layer, n) is not None]
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["exproot", "power23_clip"])
def test_singular_slope_at_zero_gives_finite_gradients(name):
    layer = get_norm_layer(f"{name}(shift=0.0)")(3)
    x = torch.zeros(2, 3, requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.alpha.grad).all()
