"""Every execution path gives the eager formula's numbers; the fused one keeps only x for the backward."""

import os
import re
import subprocess
import sys

import pytest
import torch

from derf_zoo.norms import FUNCTIONS, Derf, PointwiseNorm, get_default_kernel, set_default_kernel, use_kernel
from derf_zoo.norms.kernels import pointwise_norm, resolve_kernel
from derf_zoo.norms.kernels.cpu import cpu_kernel_available

needs_cpu_kernel = pytest.mark.skipif(not cpu_kernel_available("derf"), reason="no C compiler: CPU kernel not built")


def _run(kernel, x, params, function, channels_first, grad):
    x = x.clone().requires_grad_(True)
    params = [p.clone().requires_grad_(True) if p is not None else None for p in params]
    y = pointwise_norm(x, *params, function=function, channels_first=channels_first, kernel=kernel)
    y.backward(grad)
    return [y.detach(), x.grad] + [p.grad for p in params if p is not None]


def _inputs(function, channels_first, affine, dtype, shape=None):
    shape = shape or ((3, 6, 5, 4) if channels_first else (4, 7, 48))
    c = shape[1] if channels_first else shape[-1]
    x = (torch.randn(shape) * 2).to(dtype)
    alpha = torch.tensor([0.8])
    shift = torch.tensor([0.15]) if FUNCTIONS[function].uses_shift else None
    weight = torch.rand(c) + 0.5 if affine else None
    bias = torch.randn(c) if affine else None
    grad = torch.randn(shape).to(dtype)
    return x, [alpha, shift, weight, bias], grad


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("affine", [True, False])
def test_fused_equals_eager_float32(function, channels_first, affine):
    x, params, grad = _inputs(function, channels_first, affine, torch.float32)
    eager = _run("eager", x, params, function, channels_first, grad)
    fused = _run("fused", x, params, function, channels_first, grad)
    assert len(eager) == len(fused)
    for e, f in zip(eager, fused):
        torch.testing.assert_close(f, e, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("function", ["derf", "dyt", "isru"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_low_precision_computes_in_float32(function, dtype):
    x, params, grad = _inputs(function, False, True, dtype)
    # Reference: the eager formula in float32 on the same (rounded) inputs, rounded once at the end.
    ref = _run("eager", x.float(), params, function, False, grad.float())
    fused = _run("fused", x, params, function, False, grad)
    assert fused[0].dtype == dtype and fused[1].dtype == dtype
    tol = {torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(fused[0].float(), ref[0], rtol=tol, atol=tol)
    torch.testing.assert_close(fused[1].float(), ref[1], rtol=tol, atol=tol)
    for f, r in zip(fused[2:], ref[2:]):  # parameter gradients are reduced in float32
        torch.testing.assert_close(f, r, rtol=1e-4, atol=1e-3)


@needs_cpu_kernel
@pytest.mark.parametrize("function,reference", [("derf", torch.erf), ("dyt", torch.tanh)])
def test_cpu_kernel_function_accuracy(function, reference):
    # Dense sweep through the linear region and both saturations, against float64.
    u = torch.linspace(-12, 12, 400_001)
    layer = PointwiseNorm(u.numel(), function=function, alpha_init=1.0, affine=False, kernel="fused")
    got = layer(u[None])[0].double()
    err = (got - reference(u.double())).abs().max().item()
    assert err < 4e-7, f"{function}: max abs error {err:.2e}"


@needs_cpu_kernel
@pytest.mark.parametrize(
    "function,derivative,rel_tol",
    [
        # exp(-u^2) inherits u^2's rounding: relative error up to ~u^2 * 6e-8 (5e-6 at |u| = 9).
        ("derf", lambda u: 2 / torch.pi**0.5 * torch.exp(-u * u), 1e-5),
        # 1 - tanh(u)^2 from the clamped tanh approximation was off by 5.5e-7 at any |u| > 7.9 (rel. error 1e10).
        ("dyt", lambda u: 1 / torch.cosh(u) ** 2, 1e-6),
    ],
)
def test_cpu_kernel_derivative_accuracy(function, derivative, rel_tol):
    # f'(u) is what x.grad holds for alpha = 1 and an upstream gradient of ones: relative accuracy in the tails
    # matters because the alpha gradient multiplies it by x, however large.
    u = torch.linspace(-12, 12, 400_001)
    layer = PointwiseNorm(u.numel(), function=function, alpha_init=1.0, affine=False, kernel="fused")
    x = u[None].clone().requires_grad_(True)
    layer(x).sum().backward()
    got, want = x.grad[0].double(), derivative(u.double())
    assert (got - want).abs().max().item() < 3e-7
    normal = want > torch.finfo(torch.float32).tiny  # below, the kernel returns exactly 0 (no denormals)
    rel = ((got - want).abs() / want)[normal & (got != 0)]
    assert rel.max().item() < rel_tol, f"max relative error {rel.max().item():.2e}"
    # Exactly 0 where float32 eager is 0 or denormal (erf: exp(-u^2) < 2^-126; tanh: tanh(u) rounds to +-1).
    eager_zero = u.abs() > (9.0109 if function == "dyt" else 9.33)
    assert (got[eager_zero] == 0).all() and (got[u.abs() < 9] != 0).all()


@needs_cpu_kernel
def test_fused_keeps_exactly_one_activation_sized_tensor():
    def saved(kernel):
        layer = Derf(64, kernel=kernel)
        x = torch.randn(8, 16, 64, requires_grad=True)
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            layer(x)
        return sum(1 for n in sizes if n == x.numel())

    assert saved("fused") == 1
    assert saved("eager") >= 2  # the official-style module keeps u (or x) and erf(u) for its backward


@needs_cpu_kernel
def test_fused_backward_never_emits_denormals():
    # Saturated inputs: erf'(u) underflows. Denormal gradients would slow every matmul downstream ~100x on x86.
    layer = Derf(64, kernel="fused", alpha_init=1.0)
    x = (torch.randn(32, 64) * 12).requires_grad_(True)
    layer(x).backward(torch.randn(32, 64) * 1e-3)
    tiny = (x.grad != 0) & (x.grad.abs() < torch.finfo(torch.float32).tiny)
    assert not tiny.any()
    assert (x.grad[x.detach().abs() > 9.5] == 0).all()


@needs_cpu_kernel
def test_cpu_kernel_parallel_path_matches_eager():
    # Large enough to use every thread, rows not divisible by the thread count.
    x, params, grad = _inputs("derf", False, True, torch.float32, shape=(97, 13, 768))
    eager = _run("eager", x, params, "derf", False, grad)
    fused = _run("fused", x, params, "derf", False, grad)
    for e, f in zip(eager, fused):
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-4)


def test_compile_traces_the_fused_op_without_graph_breaks():
    layer = Derf(32, kernel="fused")
    x = torch.randn(4, 32, requires_grad=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)  # fullgraph: a graph break raises
    y = compiled(x)
    y.sum().backward()
    ref_layer = Derf(32, kernel="eager")
    x2 = x.detach().clone().requires_grad_(True)
    ref_layer(x2).sum().backward()
    torch.testing.assert_close(y, ref_layer(x2))
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.alpha.grad, ref_layer.alpha.grad, rtol=1e-4, atol=1e-4)


def test_default_kernel_and_context_manager():
    assert get_default_kernel() == "auto"
    x = torch.randn(2, 4)
    with use_kernel("eager"):
        assert resolve_kernel(None, x, "derf") == "eager"
    assert get_default_kernel() == "auto"
    set_default_kernel("fused")
    try:
        assert resolve_kernel(None, x, "isru") == "fused"
    finally:
        set_default_kernel("auto")


def test_auto_picks_the_measured_fastest_cpu_path():
    x = torch.randn(2, 4)
    expected = "fused" if cpu_kernel_available("derf") else "eager"
    assert resolve_kernel("auto", x, "derf") == expected
    # The searched functions have no compiled kernel; their pure-torch fused path measured 0.8-2.3x the eager
    # time on the CPU (benchmarks/norms.py), so auto keeps the eager formula for them.
    assert resolve_kernel("auto", x, "isru") == "eager"
    assert resolve_kernel("auto", x.double(), "derf") == "eager"


def test_bad_kernel_names_and_unavailable_triton():
    with pytest.raises(ValueError, match=r"Unknown kernel 'fast'.*fused"):
        Derf(4, kernel="fast")
    with pytest.raises(ValueError, match="Unknown kernel"):
        set_default_kernel("cuda")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(RuntimeError, match="kernel='triton' needs"):
            Derf(4, kernel="triton")(torch.randn(2, 4))


@pytest.mark.slow
def test_triton_kernels_under_the_interpreter():
    """The Triton tests of test_kernel_grads.py (first and second order, extreme inputs, bf16/fp16) on the CPU.

    A subprocess: TRITON_INTERPRET must be set before triton is imported. On CUDA the same tests run directly
    (``DERF_ZOO_TEST_DEVICE=cuda``, see scripts/gpu_checks.sh).
    """
    pytest.importorskip("triton", reason="triton is not installed (it ships with CUDA builds of torch)")
    tests = os.path.join(os.path.dirname(__file__), "test_kernel_grads.py")
    env = {**os.environ, "TRITON_INTERPRET": "1", "DERF_ZOO_TEST_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton", tests]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    # Only (kernel, function) pairs that exist are generated; at least the per-function tests must have run.
    assert passed and int(passed.group(1)) >= 40, out.stdout[-2000:]
