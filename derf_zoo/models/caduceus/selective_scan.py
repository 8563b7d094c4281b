"""The Mamba (S6) selective scan in pure PyTorch: a chunked parallel scan, and the sequential reference loop.

The recurrence, per batch b, channel d and state n (Gu & Dao, 2023, Alg. 2)::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        y_t = C_t . h_t + D * u_t   (* silu(z_t))

:func:`selective_scan_reference` is that loop, written after ``selective_scan_ref`` of
``mamba_ssm/ops/selective_scan_interface.py`` (state-spaces/mamba); it is the test oracle. :func:`selective_scan`
computes the same numbers with :class:`LinearScan`, a first-order linear recurrence solved in chunks: inside a
chunk a Hillis-Steele doubling scan (log2(chunk) vectorised steps over every chunk at once), across chunks a
short sequential carry. It only ever multiplies decays ``exp(delta * A)`` in [0, 1] and adds, so nothing
overflows however long the sequence or large ``delta`` is (a cumulative-sum-of-logs formulation would need
``exp(-cumsum)``, which overflows). The backward is the same scan run in reverse (the adjoint of a linear
recurrence is a linear recurrence), so autograd keeps one state tensor instead of every doubling step.

When the ``mamba_ssm`` CUDA kernel is installed and the tensors are on a GPU, :func:`selective_scan` calls it
(same signature, same numbers); otherwise the pure-PyTorch scan runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_CHUNK_SIZE", "LinearScan", "linear_scan", "selective_scan", "selective_scan_bld",
           "selective_scan_reference"]

#: Chunk length of the parallel scan (a power of two). On CPU short chunks win: each doubling step is a pass
#: over the whole (B, L, D, N) state, while the carry loop over L / chunk steps is cheap (benchmarks/caduceus_step.py).
DEFAULT_CHUNK_SIZE = 4

try:  # The fused CUDA kernel; optional, and never importable on a machine without CUDA.
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan
except Exception:
    _cuda_selective_scan = None


def cuda_kernel_available() -> bool:
    """Whether ``mamba_ssm``'s fused selective-scan kernel is importable here."""
    return _cuda_selective_scan is not None


def _wide(t: Tensor) -> Tensor:
    """At least float32 (half inputs are scanned in float32, as mamba_ssm does; float64 stays float64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _check_chunk_size(chunk_size: int) -> int:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two (the doubling scan needs it), got {chunk_size}.")
    return chunk_size


@torch.no_grad()
def _scan_forward(a: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int, adjoint: bool = False) -> Tensor:
    """``h_t = a_t * h_{t-1} + b_t`` along dim 1 of (B, L, ...) tensors, with ``h_{-1} = h0`` (or 0).

    ``adjoint=True`` solves the backward pass's recurrence instead, right to left with the decays shifted by one:
    ``h_t = a_{t+1} * h_{t+1} + b_t`` (``h_L = h0`` or 0), without flipping any tensor.
    """
    batch, length = a.shape[:2]
    rest = a.shape[2:]
    chunk = min(chunk_size, 1 << max(length - 1, 0).bit_length())  # no longer than the sequence needs
    n_chunks = -(-length // chunk)
    padded = n_chunks * chunk
    # Work on copies laid out (B, chunks, T, ...); padding at the end with a=1, b=0 changes no real position.
    a_c = a.new_ones((batch, padded, *rest))
    b_c = b.new_zeros((batch, padded, *rest))
    if adjoint:
        a_c[:, : length - 1] = a[:, 1:]
    else:
        a_c[:, :length] = a
    b_c[:, :length] = b
    a_c = a_c.view(batch, n_chunks, chunk, *rest)
    b_c = b_c.view(batch, n_chunks, chunk, *rest)
    # Hillis-Steele inside each chunk: after the step with offset k, position t holds the recurrence over
    # (t-2k, t] (adjoint: [t, t+2k)), so log2(T) steps give every prefix; a_c becomes the product of the decays
    # from the chunk's start (adjoint: to its end). The clones keep each step reading the previous step's values.
    k = 1
    while k < chunk:
        if adjoint:
            b_c[:, :, :-k].addcmul_(a_c[:, :, :-k], b_c[:, :, k:].clone())
            a_c[:, :, :-k].mul_(a_c[:, :, k:].clone())
        else:
            b_c[:, :, k:].addcmul_(a_c[:, :, k:], b_c[:, :, :-k].clone())
            a_c[:, :, k:].mul_(a_c[:, :, :-k].clone())
        k *= 2
    # Sequential carry across chunks: the state entering chunk c from the chunks before it (adjoint: after it).
    carries = b.new_empty((batch, n_chunks, *rest))
    h = h0 if h0 is not None else b.new_zeros((batch, *rest))
    order, edge = (range(n_chunks - 1, -1, -1), 0) if adjoint else (range(n_chunks), -1)
    for c in order:
        carries[:, c] = h
        h = torch.addcmul(b_c[:, c, edge], a_c[:, c, edge], h)
    b_c.addcmul_(a_c, carries.unsqueeze(2))
    return b_c.view(batch, padded, *rest)[:, :length]


class LinearScan(torch.autograd.Function):
    """``h_t = a_t * h_{t-1} + b_t`` along dim 1, chunked parallel forward and reverse-scan backward.

    The adjoint: with ``g_t = dLoss/dh_t`` (total), ``g_t = grad_t + a_{t+1} g_{t+1}`` is the same recurrence
    run backwards, then ``dLoss/db_t = g_t``, ``dLoss/da_t = g_t h_{t-1}``, ``dLoss/dh0 = a_0 g_0``.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None, chunk_size: int) -> Tensor:
        h = _scan_forward(a, b, h0, chunk_size)
        ctx.save_for_backward(a, h, h0)
        ctx.chunk_size = chunk_size
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):
        a, h, h0 = ctx.saved_tensors
        g = _scan_forward(a, grad_h, None, ctx.chunk_size, adjoint=True)
        grad_a = torch.empty_like(g)
        torch.mul(g[:, 1:], h[:, :-1], out=grad_a[:, 1:])
        if h0 is not None:
            torch.mul(g[:, 0], h0, out=grad_a[:, 0])
        else:
            grad_a[:, 0] = 0
        grad_h0 = a[:, 0] * g[:, 0] if h0 is not None and ctx.needs_input_grad[2] else None
        return grad_a, g, grad_h0, None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """Solve ``h_t = a_t * h_{t-1} + b_t`` along dim 1 of two (B, L, ...) tensors (differentiable).

    Args:
        a: decays (B, L, ...).
        b: inputs, same shape.
        h0: initial state (B, ...), or None for zeros.
        chunk_size: chunk length of the parallel scan (a power of two).
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"linear_scan needs a and b of one shape (B, L, ...), got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}.")  # fmt: skip
    return LinearScan.apply(a, b, h0, _check_chunk_size(chunk_size))


def _check_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"selective scan: u and delta must both be (batch, d_inner, length), got {tuple(u.shape)} "
                         f"and {tuple(delta.shape)}.")  # fmt: skip
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective scan: A must be (d_inner={dim}, d_state), got {tuple(A.shape)}.")
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, A.shape[1], length):
            raise ValueError(f"selective scan: {name} must be (batch, d_state, length) = "
                             f"{(batch, A.shape[1], length)}, got {tuple(t.shape)}.")  # fmt: skip


def _discretise(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + _wide(delta_bias)[..., None]
    return F.softplus(delta) if delta_softplus else delta


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The selective scan as a sequential loop over time (mamba_ssm's ``selective_scan_ref``, real inputs).

    Args:
        u: input (batch, d_inner, length).
        delta: step sizes (batch, d_inner, length), before ``delta_bias`` and softplus.
        A: state matrix (d_inner, d_state), negative for a stable recurrence.
        B: input projection (batch, d_state, length) (input-dependent, Mamba's "selective" B).
        C: output projection (batch, d_state, length).
        D: skip connection (d_inner,), or None.
        z: gate (batch, d_inner, length): the output is multiplied by ``silu(z)``; None for no gate.
        delta_bias: added to ``delta`` (d_inner,), or None.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        return_last_state: also return the final state (batch, d_inner, d_state).

    Returns:
        y (batch, d_inner, length) in u's dtype, and the last state when asked.
    """
    _check_shapes(u, delta, A, B, C)
    dtype_in = u.dtype
    u, delta, B, C = _wide(u), _wide(delta), _wide(B), _wide(C)
    delta = _discretise(delta, delta_bias, delta_softplus)
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, _wide(A)))
    delta_b_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h = u.new_zeros((u.shape[0], u.shape[1], A.shape[1]))
    ys = []
    for t in range(u.shape[2]):
        h = delta_a[:, :, t] * h + delta_b_u[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + u * _wide(D)[:, None]
    if z is not None:
        y = y * F.silu(_wide(z))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def selective_scan_bld(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor:
    """The chunked selective scan in the token-major layout the Mamba block holds (length before channels).

    Same arithmetic as :func:`selective_scan` (``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``,
    ``y_t = C_t h_t + D u_t``, gated by ``silu(z_t)``), without transposing the block's activations to
    mamba_ssm's channel-major layout and back. Computed in float32 at least; the output has ``u``'s dtype.

    Args:
        u: input (batch, length, d_inner).
        delta: step sizes (batch, length, d_inner), before ``delta_bias`` and softplus.
        A: state matrix (d_inner, d_state), negative for a stable recurrence.
        B: input projection (batch, length, d_state) (input-dependent, Mamba's "selective" B).
        C: output projection (batch, length, d_state).
        D: skip connection (d_inner,), or None.
        z: gate (batch, length, d_inner): the output is multiplied by ``silu(z)``; None for no gate.
        delta_bias: added to ``delta`` (d_inner,), or None.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        chunk_size: chunk length of the parallel scan (see :func:`linear_scan`).

    Returns:
        y (batch, length, d_inner).
    """
    dtype_in = u.dtype
    u, delta = _wide(u), _wide(delta)
    if delta_bias is not None:
        delta = delta + _wide(delta_bias)
    if delta_softplus:
        delta = F.softplus(delta)
    # (B, L, D, N): the layout in which both the scan (over L) and the C contraction (a batched matmul over
    # (B, L)) need no copies.
    decay = torch.exp(delta.unsqueeze(-1) * _wide(A))
    drive = (delta * u).unsqueeze(-1) * _wide(B).unsqueeze(2)
    h = linear_scan(decay, drive, None, chunk_size)
    y = (h @ _wide(C).unsqueeze(-1)).squeeze(-1)
    if D is not None:
        y = y + u * _wide(D)
    if z is not None:
        y = y * F.silu(_wide(z))
    return y.to(dtype_in)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    use_cuda_kernel: bool = True,
) -> Tensor:
    """The selective scan with mamba_ssm's signature (see :func:`selective_scan_reference` for the arguments).

    Runs ``mamba_ssm``'s fused kernel when it is installed, ``use_cuda_kernel`` is true and ``u`` is on a CUDA
    device; otherwise the chunked pure-PyTorch scan (``chunk_size``, a power of two).
    """
    _check_shapes(u, delta, A, B, C)
    if use_cuda_kernel and _cuda_selective_scan is not None and u.is_cuda:
        return _cuda_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    y = selective_scan_bld(
        u.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2), D,
        None if z is None else z.transpose(1, 2), delta_bias, delta_softplus, _check_chunk_size(chunk_size),
    )  # fmt: skip
    return y.transpose(1, 2)
