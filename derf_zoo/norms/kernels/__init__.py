"""Execution paths for point-wise norms, all giving the same numbers within dtype tolerance.

- ``"eager"``: the official formula in torch ops; autograd keeps three activation-sized tensors.
- ``"fused"``: one fused forward and a backward that recomputes from ``x``, the only activation it keeps.
  On the CPU it runs the compiled C kernel for Derf and DyT (built on first use) and pure torch for the
  rest; it computes in float32 for bf16/fp16 inputs.
- ``"triton"``: the same with Triton kernels (CUDA; on the CPU only under ``TRITON_INTERPRET=1``, which is
  how the tests check it).
- ``"auto"`` (default): the fastest correct path for the device and function, measured in
  ``benchmarks/norms.py``: Triton on CUDA when installed, the C kernel on the CPU, else eager.

In eager mode the fused paths run through a plain ``autograd.Function``; under ``torch.compile`` they are
the registered op ``torch.ops.derf_zoo.pointwise_norm`` (fake tensor + autograd formulas), so compilation
traces through without graph breaks. Both call the same implementations.

Gradients of gradients (``create_graph=True``: gradient penalties, meta-learning, ``gradgradcheck``): the C and
Triton backwards write through raw pointers, outside any graph, so a backward that is itself being recorded
takes the same closed-form gradients in differentiable torch ops instead (``reference.fused_backward``).
Plain first-order backwards run with grad mode off and keep the fast kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from derf_zoo._validate import check_choice
from derf_zoo.norms.kernels import reference
from derf_zoo.norms.kernels.cpu import cpu_backward, cpu_forward, cpu_kernel_supports

__all__ = [
    "KERNELS",
    "check_kernel",
    "get_default_kernel",
    "pointwise_norm",
    "resolve_kernel",
    "set_default_kernel",
    "use_kernel",
]

KERNELS = ("auto", "eager", "fused", "triton")
_default_kernel = "auto"


def check_kernel(kernel: str) -> str:
    return check_choice("kernel", kernel, KERNELS)


def set_default_kernel(kernel: str) -> None:
    """Set the path used by every point-wise norm whose ``kernel`` is None."""
    global _default_kernel
    _default_kernel = check_kernel(kernel)


def get_default_kernel() -> str:
    """The kernel norms with ``kernel="auto"`` use now (``"auto"`` unless changed by :func:`set_default_kernel` or
    :func:`use_kernel`)."""
    return _default_kernel


@contextlib.contextmanager
def use_kernel(kernel: str) -> Iterator[None]:
    """Temporarily change the default kernel: ``with use_kernel("eager"): model(x)``."""
    previous = get_default_kernel()
    set_default_kernel(kernel)
    try:
        yield
    finally:
        set_default_kernel(previous)


def _triton_usable(x: Tensor, function: str) -> bool:
    from derf_zoo.norms.kernels import triton_kernels

    return triton_kernels.supports(x, function)


def resolve_kernel(kernel: str | None, x: Tensor, function: str) -> str:
    """The concrete path (``"eager" | "fused" | "triton"``) a call would take."""
    kernel = check_kernel(kernel or _default_kernel)
    if kernel != "auto":
        if kernel == "triton" and not _triton_usable(x, function):
            raise RuntimeError(
                f"kernel='triton' needs Triton and a CUDA tensor (or TRITON_INTERPRET=1 on the CPU) for function "
                f"{function!r}; got a {x.device.type} tensor. Use kernel='auto' to pick what this machine supports."
            )
        return kernel
    if x.is_cuda and _triton_usable(x, function):
        return "triton"
    if cpu_kernel_supports(x, function):
        return "fused"
    return "eager"


def pointwise_norm(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    *,
    function: str,
    channels_first: bool = False,
    kernel: str | None = None,
) -> Tensor:
    """``weight * f(alpha * x + shift) + bias`` along the chosen path (see the module docstring)."""
    path = resolve_kernel(kernel, x, function)
    if path == "eager":
        return reference.eager_forward(x, alpha, shift, weight, bias, function, channels_first)
    use_triton = path == "triton"
    if torch.compiler.is_compiling():
        # The registered op: fake-tensor and autograd formulas let torch.compile trace through it.
        return torch.ops.derf_zoo.pointwise_norm(x, alpha, shift, weight, bias, function, channels_first, use_triton)
    # Eager execution: the same implementations through a plain autograd.Function, which costs ~10x less
    # per call than the custom-op dispatcher (it matters for small models: measured 0.4 -> 0.1 ms per layer).
    return _FusedPointwiseNorm.apply(x, alpha, shift, weight, bias, function, channels_first, use_triton)


# ---- implementations shared by both entry points ------------------------------------------------------


def _forward_impl(x, alpha, shift, weight, bias, function, channels_first, use_triton) -> Tensor:
    if use_triton:
        from derf_zoo.norms.kernels import triton_kernels

        return triton_kernels.forward(x, alpha, shift, weight, bias, function, channels_first)
    if cpu_kernel_supports(x, function):
        return cpu_forward(x, alpha, shift, weight, bias, function, channels_first)
    return reference.fused_forward(x, alpha, shift, weight, bias, function, channels_first)


def _records_graph(*tensors: Tensor | None) -> bool:
    """Whether this backward is itself being recorded (``create_graph=True``: gradient penalties, ``gradgradcheck``).

    Autograd runs a backward with grad mode on only then. The C and Triton kernels write their results through
    raw pointers, which no graph can see; their gradients would be constants and every second-order gradient
    through them silently 0 (or missing).
    """
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _backward_impl(grad, x, alpha, shift, weight, function, channels_first, use_triton):
    if use_triton:
        from derf_zoo.norms.kernels import triton_kernels

        return triton_kernels.backward(grad, x, alpha, shift, weight, function, channels_first)
    if cpu_kernel_supports(x, function):
        return cpu_backward(grad, x, alpha, shift, weight, function, channels_first)
    return reference.fused_backward(grad, x, alpha, shift, weight, function, channels_first)


def _input_grads(ctx, grads) -> tuple:
    dx, dalpha, dshift, dweight, dbias = grads
    need = ctx.needs_input_grad
    return (
        dx if need[0] else None,
        dalpha if need[1] else None,
        dshift if need[2] else None,
        dweight if need[3] else None,
        dbias if need[4] else None,
        None,
        None,
        None,
    )


class _FusedPointwiseNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, shift, weight, bias, function, channels_first, use_triton):
        ctx.save_for_backward(x, alpha, shift, weight)
        ctx.function, ctx.channels_first, ctx.use_triton = function, channels_first, use_triton
        return _forward_impl(x, alpha, shift, weight, bias, function, channels_first, use_triton)

    @staticmethod
    def backward(ctx, grad):
        x, alpha, shift, weight = ctx.saved_tensors
        if _records_graph(grad, x, alpha, shift, weight):
            # The same closed-form gradients in differentiable torch ops, which autograd differentiates again.
            # First-order backwards run with grad mode off, never come here, and keep the fast kernels.
            grads = reference.fused_backward(grad, x, alpha, shift, weight, ctx.function, ctx.channels_first)
        else:
            grads = _backward_impl(grad, x, alpha, shift, weight, ctx.function, ctx.channels_first, ctx.use_triton)
        return _input_grads(ctx, grads)


# ---- the custom op (what torch.compile sees) -----------------------------------------------------------


@torch.library.custom_op("derf_zoo::pointwise_norm", mutates_args=())
def _pointwise_norm_op(
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    function: str,
    channels_first: bool,
    use_triton: bool,
) -> Tensor:
    return _forward_impl(x, alpha, shift, weight, bias, function, channels_first, use_triton)


@_pointwise_norm_op.register_fake
def _(x, alpha, shift, weight, bias, function, channels_first, use_triton):
    return torch.empty_like(x)


@torch.library.custom_op("derf_zoo::pointwise_norm_backward", mutates_args=())
def _pointwise_norm_backward_op(
    grad: Tensor,
    x: Tensor,
    alpha: Tensor,
    shift: Tensor | None,
    weight: Tensor | None,
    function: str,
    channels_first: bool,
    use_triton: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = _backward_impl(grad, x, alpha, shift, weight, function, channels_first, use_triton)
    # A custom op cannot return None: absent parameters get empty placeholders, dropped again in _backward.
    return tuple(g if g is not None else x.new_empty(0) for g in grads)  # type: ignore[return-value]


@_pointwise_norm_backward_op.register_fake
def _(grad, x, alpha, shift, weight, function, channels_first, use_triton):
    def like(t):
        return torch.empty_like(t) if t is not None else x.new_empty(0)

    return torch.empty_like(x), torch.empty_like(alpha), like(shift), like(weight), like(weight)


def _setup_context(ctx, inputs, output) -> None:
    x, alpha, shift, weight, _bias, function, channels_first, use_triton = inputs
    ctx.save_for_backward(x, alpha, shift, weight)
    ctx.function, ctx.channels_first, ctx.use_triton = function, channels_first, use_triton


def _backward(ctx, grad: Tensor):
    x, alpha, shift, weight = ctx.saved_tensors
    if _records_graph(grad, x, alpha, shift, weight):
        # As in _FusedPointwiseNorm.backward: the backward op has no autograd formula of its own.
        grads = reference.fused_backward(grad, x, alpha, shift, weight, ctx.function, ctx.channels_first)
    else:
        grads = torch.ops.derf_zoo.pointwise_norm_backward(
            grad, x, alpha, shift, weight, ctx.function, ctx.channels_first, ctx.use_triton
        )
    return _input_grads(ctx, grads)


_pointwise_norm_op.register_autograd(_backward, setup_context=_setup_context)
