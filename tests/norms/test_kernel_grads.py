"""Gradients of gradients and extreme inputs: every fast path gives the eager formula's numbers.

The device comes from ``DERF_ZOO_TEST_DEVICE`` (default ``cpu``), so ``scripts/gpu_checks.sh`` runs these same
tests on CUDA. On the CPU, ``kernel="fused"`` is the compiled C kernel for Derf/DyT/tanh and the pure-torch
fused path for the other functions; ``kernel="triton"`` runs only under ``TRITON_INTERPRET=1`` (set before
triton is imported), which ``tests/norms/test_kernels.py`` does in a subprocess.
"""

import copy
import math
import os

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

import derf_zoo
from derf_zoo.norms import FUNCTIONS, use_kernel
from derf_zoo.norms.kernels import pointwise_norm, resolve_kernel
from derf_zoo.norms.kernels.cpu import CPU_FUNCTIONS, cpu_kernel_available
from derf_zoo.norms.kernels.triton_kernels import TRITON_FUNCTIONS
from derf_zoo.norms.kernels.triton_kernels import supports as triton_supports

DEVICE = torch.device(os.environ.get("DERF_ZOO_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and not torch.cuda.is_available():
    pytest.skip(f"DERF_ZOO_TEST_DEVICE={DEVICE} but CUDA is not available", allow_module_level=True)

# Functions with their own compiled kernel (C on the CPU, Triton) and one that takes the fused torch path.
KERNEL_FUNCTIONS = ["derf", "dyt", "tanh"]
TORCH_PATH_FUNCTION = "isru"


def _paths(functions):
    """(kernel, function) pairs that exist: every function has the fused path, only some a Triton kernel."""
    return [("fused", f) for f in functions] + [("triton", f) for f in functions if f in TRITON_FUNCTIONS]


def _skip_unless_runs(kernel: str, function: str) -> None:
    """Skip (with the reason) a path that cannot run here, and make sure ``fused`` means the compiled kernel."""
    probe = torch.empty(1, device=DEVICE)
    if kernel == "triton":
        if function not in TRITON_FUNCTIONS:
            pytest.skip(f"no Triton kernel for {function!r}")
        if not triton_supports(probe, function):
            pytest.skip("Triton needs CUDA or TRITON_INTERPRET=1 (test_kernels.py runs these under the interpreter)")
    elif DEVICE.type == "cpu" and function in CPU_FUNCTIONS and not cpu_kernel_available(function):
        pytest.skip("no C compiler: the CPU kernel is not built")
    assert resolve_kernel(kernel, probe, function) == kernel


def _make(function, channels_first, affine, scale=2.0, shape=None, dtype=torch.float32):
    shape = shape or ((2, 5, 3, 4) if channels_first else (3, 4, 24))
    c = shape[1] if channels_first else shape[-1]
    x = (torch.randn(shape) * scale).to(DEVICE, dtype)
    params = [
        torch.tensor([0.8]),
        torch.tensor([0.15]) if FUNCTIONS[function].uses_shift else None,
        torch.rand(c) + 0.5 if affine else None,
        torch.randn(c) if affine else None,
    ]
    params = [p.to(DEVICE) if p is not None else None for p in params]
    grad = torch.randn(shape).to(DEVICE, dtype)
    return x, params, grad


def _leaves(x, params, grad):
    x = x.clone().requires_grad_(True)
    params = [p.clone().requires_grad_(True) if p is not None else None for p in params]
    return x, params, grad.clone().requires_grad_(True)


def _zeros_for_none(grads, like):
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, like)]


def _second_order(kernel, function, channels_first, x, params, grad):
    """First-order gradients with ``create_graph=True``, then gradients of a scalar made of all of them.

    The scalar mixes every first-order gradient, squared so that its own second derivative is not constant, and
    the upstream gradient is a leaf too: the graph must reach x, alpha, shift, weight and the output gradient.
    """
    x, params, grad = _leaves(x, params, grad)
    y = pointwise_norm(x, *params, function=function, channels_first=channels_first, kernel=kernel)
    inputs = [x] + [p for p in params if p is not None]
    first = torch.autograd.grad(y, inputs, grad, create_graph=True)
    loss = sum((g.float() ** 2).sum() * (i + 1) for i, g in enumerate(first))
    second = torch.autograd.grad(loss, [*inputs, grad], allow_unused=True)
    return [y.detach(), *[g.detach() for g in first], *_zeros_for_none(second, [*inputs, grad])]


def _assert_all_close(got, want, rtol, atol, what):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g.float(), w.float(), rtol=rtol, atol=atol, msg=lambda m, i=i: f"{what}[{i}]: {m}")


@pytest.mark.parametrize(("kernel", "function"), _paths([*KERNEL_FUNCTIONS, TORCH_PATH_FUNCTION]))
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_first_order_matches_eager_float32(kernel, function, channels_first, affine):
    """The plain backward (the kernels' own, not the differentiable formula a recorded backward takes)."""
    _skip_unless_runs(kernel, function)
    x, params, grad = _make(function, channels_first, affine)
    want = _first_order("eager", function, channels_first, x, params, grad)
    got = _first_order(kernel, function, channels_first, x, params, grad)
    _assert_all_close(got, want, rtol=2e-5, atol=2e-5, what=f"{kernel}/{function}")


@pytest.mark.parametrize(("kernel", "function"), _paths([*KERNEL_FUNCTIONS, TORCH_PATH_FUNCTION]))
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_double_backward_matches_eager_float32(kernel, function, channels_first, affine):
    _skip_unless_runs(kernel, function)
    x, params, grad = _make(function, channels_first, affine)
    want = _second_order("eager", function, channels_first, x, params, grad)
    got = _second_order(kernel, function, channels_first, x, params, grad)
    # The second-order gradient wrt x is not zero: a cut graph (the bug this guards) would give zeros.
    assert want[-len(params) - 2].abs().max() > 1e-3
    _assert_all_close(got, want, rtol=1e-4, atol=1e-4, what=f"{kernel}/{function}")


@pytest.mark.parametrize("kernel", ["fused", "triton"])
def test_double_backward_through_a_whole_model_matches_eager(kernel):
    """A gradient penalty on a whole ViT: every parameter's gradient equals the eager formula's."""
    _skip_unless_runs(kernel, "derf")
    torch.manual_seed(0)
    model = derf_zoo.create_model("vit_nano_derf").to(DEVICE)
    x0 = torch.randn(2, 1, 16, 16, device=DEVICE)
    grads = {}
    for k in ("eager", kernel):
        m = copy.deepcopy(model)
        x = x0.clone().requires_grad_(True)
        # The math attention backend: the fused attention kernels have no double backward of their own.
        with use_kernel(k), sdpa_kernel(SDPBackend.MATH):
            (g,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
            g.pow(2).sum().backward()
        grads[k] = {name: p.grad for name, p in m.named_parameters()} | {"input_grad": g.detach()}
    missing = [n for n, g in grads[kernel].items() if g is None and grads["eager"][n] is not None]
    assert not missing, f"no second-order gradient reached: {missing}"
    assert grads["eager"]["fc_norm.alpha"].abs().item() > 0
    for name, want in grads["eager"].items():
        if want is not None:
            torch.testing.assert_close(
                grads[kernel][name], want, rtol=1e-3, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}"
            )


@pytest.mark.parametrize("kernel", ["fused", "triton"])
def test_double_backward_through_the_custom_op_matches_eager(kernel):
    """The registered op torch.compile traces: its backward op has no autograd formula, so a recorded backward
    must not go through it."""
    _skip_unless_runs(kernel, "derf")
    x, params, grad = _make("derf", False, True)

    def run(op):
        xs, ps, g = _leaves(x, params, grad)
        if op:
            y = torch.ops.derf_zoo.pointwise_norm(xs, *ps, "derf", False, kernel == "triton")
        else:
            y = pointwise_norm(xs, *ps, function="derf", kernel="eager")
        first = torch.autograd.grad(y, [xs, *ps[:3]], g, create_graph=True)
        loss = sum((f**2).sum() for f in first)
        return [*first, *torch.autograd.grad(loss, [xs, *ps[:3], g])]

    _assert_all_close(run(True), run(False), rtol=1e-4, atol=1e-4, what="custom op")


@pytest.mark.skipif(DEVICE.type != "cpu", reason="counts calls of the CPU kernel")
def test_first_order_backward_keeps_the_c_kernel(monkeypatch):
    """Only a recorded backward takes the differentiable torch formula; a plain one, eager or compiled, still
    runs the C kernel."""
    _skip_unless_runs("fused", "derf")
    import derf_zoo.norms.kernels as kernels

    calls = {"c": 0, "torch": 0}
    c_backward, torch_backward = kernels.cpu_backward, kernels.reference.fused_backward

    def count(name, fn):
        def wrapped(*args):
            calls[name] += 1
            return fn(*args)

        return wrapped

    monkeypatch.setattr(kernels, "cpu_backward", count("c", c_backward))
    monkeypatch.setattr(kernels.reference, "fused_backward", count("torch", torch_backward))
    layer = derf_zoo.norms.Derf(16, kernel="fused")
    x = torch.randn(3, 16, requires_grad=True)
    layer(x).sum().backward()
    torch.compile(layer, backend="aot_eager", fullgraph=True)(x).sum().backward()
    assert calls == {"c": 2, "torch": 0}
    (g,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    assert calls == {"c": 2, "torch": 1} and g.requires_grad


# ---- extreme inputs ---------------------------------------------------------------------------------------


def _extreme(kind: str, shape) -> torch.Tensor:
    n = math.prod(shape)
    sign = torch.where(torch.rand(n) < 0.5, -1.0, 1.0)
    if kind == "1e4":
        x = torch.randn(n) * 1e4
    elif kind == "1e30":
        x = sign * 1e30 * (1 + torch.rand(n))
    elif kind == "inf":
        x = sign * math.inf
    else:  # "mixed": finite magnitudes in one tensor, so saturated and linear elements share the reductions
        x = torch.cat([torch.randn(n // 4) * 1e4, torch.randn(n // 4), sign[: n // 4] * 1e30,
                       torch.randn(n - n // 4 * 3) * 12])  # fmt: skip
        x = x[torch.randperm(n)]
    return x.reshape(shape).to(DEVICE)


def _first_order(kernel, function, channels_first, x, params, grad):
    x = x.clone().requires_grad_(True)
    params = [p.clone().requires_grad_(True) if p is not None else None for p in params]
    y = pointwise_norm(x, *params, function=function, channels_first=channels_first, kernel=kernel)
    y.backward(grad)
    return [y.detach(), x.grad] + [p.grad for p in params if p is not None]


def _reduction_atol(exact, x, alpha):
    """Absolute tolerance of the alpha and shift sums: 1e-5 of the sum of the |terms| (in float64).

    The terms of dalpha are ``g * w * f'(u) * x = dx * x / alpha`` and those of dshift ``dx / alpha``; a fused
    path sums them in another order than eager, so the two differ by roundings of these terms, not of the
    (possibly cancelling) total. Non-finite terms are left out: there eager's sum is not finite either.
    """
    dx = exact[1]
    terms_alpha = (dx * x.double()).abs() / alpha.double().abs()
    terms_shift = dx.abs() / alpha.double().abs()
    return (1e-5 * terms_alpha[terms_alpha.isfinite()].sum().item() + 1e-6,
            1e-5 * terms_shift[terms_shift.isfinite()].sum().item() + 1e-6)  # fmt: skip


def _assert_as_accurate_as_eager(got, eager, exact, rtol, atol, what):
    """Where eager (float32) is finite, ``got`` is finite and as close to eager as float32 rounding allows.

    Eager's own float32 formula can be the inaccurate one (autograd through ``u * rsqrt(u*u + 1)`` cancels
    two ~1e-4 terms for a 1e-12 derivative at u = 1e4), so the allowance also includes eager's distance
    from the float64 result: the fused value must be as accurate as eager's, not equal to its rounding error.
    """
    finite = eager.isfinite()
    g, w = got[finite].double(), eager[finite].double()
    assert g.isfinite().all(), f"{what}: not finite where eager is: {got[finite][~g.isfinite()][:8]}"
    e = exact[finite]
    eager_error = torch.where(e.isfinite(), (w - e).abs(), torch.zeros_like(w))
    allowed = atol + rtol * w.abs() + eager_error
    bad = (g - w).abs() > allowed
    assert not bad.any(), (
        f"{what}: {int(bad.sum())}/{bad.numel()} differ from eager; got {g[bad][:4].tolist()}, "
        f"eager {w[bad][:4].tolist()}, float64 {e[bad][:4].tolist()}, allowed {allowed[bad][:4].tolist()}"
    )


@pytest.mark.parametrize(("kernel", "function"), _paths(sorted(FUNCTIONS)))
@pytest.mark.parametrize("kind", ["1e4", "1e30", "inf", "mixed"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_extreme_inputs_match_eager(kernel, function, kind, channels_first):
    """Saturated inputs: every gradient equals eager's wherever eager's is finite (tanh clamped at 7.9 gave
    the DyT alpha gradient 4.8e24 instead of 0 at x = 1e30)."""
    _skip_unless_runs(kernel, function)
    shape = (2, 8, 4, 4) if channels_first else (4, 8, 32)
    _, params, grad = _make(function, channels_first, True, shape=shape)
    x = _extreme(kind, shape)
    want = _first_order("eager", function, channels_first, x, params, grad)
    got = _first_order(kernel, function, channels_first, x, params, grad)
    # float64 eager: the oracle for the reductions, which float32 eager may round as much as the fused path does.
    params64 = [p.double() if p is not None else None for p in params]
    exact = _first_order("eager", function, channels_first, x.double(), params64, grad.double())
    atol_alpha, atol_shift = _reduction_atol(exact, x, params[0])
    names = ["y", "dx", "dalpha", "dshift", "dweight", "dbias"] if params[1] is not None else \
        ["y", "dx", "dalpha", "dweight", "dbias"]  # fmt: skip
    for name, g, w, e in zip(names, got, want, exact):
        atol = {"dalpha": atol_alpha, "dshift": atol_shift}.get(name, 5e-5)
        _assert_as_accurate_as_eager(g, w, e, rtol=1e-4, atol=atol, what=f"{kernel}/{function}/{kind}: {name}")


@pytest.mark.parametrize("kernel", ["fused", "triton"])
@pytest.mark.parametrize("function", KERNEL_FUNCTIONS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matches_float32_eager(kernel, function, dtype):
    """bf16/fp16 inputs compute in float32: outputs within one rounding of eager float32 on the same inputs."""
    _skip_unless_runs(kernel, function)
    x, params, grad = _make(function, False, True, dtype=dtype)
    ref = _first_order("eager", function, False, x.float(), params, grad.float())
    got = _first_order(kernel, function, False, x, params, grad)
    assert got[0].dtype == dtype and got[1].dtype == dtype
    tol = {torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(got[0].float(), ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(got[1].float(), ref[1], rtol=tol, atol=tol)
    for g, r in zip(got[2:], ref[2:]):  # parameter gradients are reduced in float32
        torch.testing.assert_close(g.float(), r, rtol=1e-3, atol=1e-3)
