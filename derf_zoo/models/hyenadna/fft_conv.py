"""Causal long convolution by FFT: ``y[t] = sum_{s<=t} k[t - s] u[s] + D u[t]`` in O(L log L).

The input and the filter are zero-padded to ``2L`` so the circular convolution of the FFT equals the linear
one on the first ``L`` outputs: no output sees a later input. As ``fftconv_ref`` in HazyResearch/hyena-dna
(``src/models/sequence/hyena.py``), the transforms run in float32 (float64 for float64 inputs) and ``D`` (the
filter's "bias") adds a skip term per channel.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fft_causal_conv"]


def fft_causal_conv(u: Tensor, k: Tensor, skip: Tensor | None = None) -> Tensor:
    """Causal convolution of ``u`` with a filter as long as the sequence.

    Args:
        u: input ``(..., D, L)``.
        k: filter ``(D, L)`` (or broadcastable to ``u``); ``k[:, 0]`` weights the current position.
        skip: per-channel skip weight ``D`` of shape ``(D,)`` (or broadcastable to ``(..., D)``), or None.

    Returns:
        ``(..., D, L)`` in ``u``'s dtype.
    """
    length = u.shape[-1]
    if k.shape[-1] != length:
        raise ValueError(f"fft_causal_conv: the filter has length {k.shape[-1]} but the input {length}; the "
                         "filter must be as long as the sequence.")  # fmt: skip
    n = 2 * length  # zero padding to 2L: the circular wrap-around lands beyond position L - 1
    dtype = torch.promote_types(u.dtype, torch.float32)  # half precision is transformed in float32
    k_f = torch.fft.rfft(k.to(dtype), n=n)
    u_f = torch.fft.rfft(u.to(dtype), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :length]
    if skip is not None:
        y = y + u * skip.unsqueeze(-1)
    return y.to(u.dtype)
