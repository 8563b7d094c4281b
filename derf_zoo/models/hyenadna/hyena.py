"""The Hyena operator (Poli et al., 2023) as a mixer of the backbone: ``"hyena(order=2, filter_order=64)"``.

Follows HazyResearch/hyena-dna ``src/models/sequence/hyena.py`` (the code that trained the public
``LongSafari/hyenadna-*`` checkpoints; the same code is vendored in kuleshov-group/caduceus):

1. ``in_proj`` widens ``(B, L, D)`` to ``(order + 1) * D`` channels;
2. ``short_filter``, a depthwise causal convolution (kernel 3, left context only), mixes neighbours;
3. the channels split into gates ``x_0 .. x_{order-1}`` and a value ``v``; for each remaining gate (last
   first) ``v = long_conv(dropout(v * x_i))``, where ``long_conv`` is a causal FFT convolution with an
   implicit filter as long as the sequence plus a per-channel skip (the filter's ``bias``);
4. ``out_proj(v * x_0)``.

The implicit filter (:class:`HyenaFilter`) is ``h(t) = MLP(pos_emb(t)) * window(t)``: a fixed positional
embedding (normalised time plus complex-exponential bands), an MLP whose activations are ``sin(freq * x)`` with
one learned ``freq`` shared by every activation, and an exponential decay window. State-dict names are the
reference's, except that the one shared sine lives at ``filter_fn.sin.freq`` (the reference lists the same
tensor once per activation, ``implicit_filter.{1,3,5}.freq``).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from derf_zoo.layers.mixers import register_mixer
from derf_zoo.models.hyenadna.fft_conv import fft_causal_conv

__all__ = ["ExponentialModulation", "HyenaFilter", "HyenaOperator", "HyenaPositionalEmbedding", "Sin"]


class Sin(nn.Module):
    """``sin(freq * x)`` with a learned frequency per feature (initialised to ``w``)."""

    def __init__(self, dim: int, w: float = 10.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaPositionalEmbedding(nn.Module):
    """The filter's input: ``[t, cos(-f w), sin(-f w)]`` per position, ``t`` in [0, 1], ``w = 2 pi l / L``.

    Fixed (the public configs set ``lr_pos_emb: 0``), kept as persistent buffers ``z`` (1, L, emb_dim) and ``t``
    (1, L, 1) because the public state dicts carry them.
    """

    def __init__(self, emb_dim: int, seq_len: int) -> None:
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3 (time, then cosine and sine bands), got {emb_dim}.")
        self.seq_len = seq_len
        t = torch.linspace(0, 1, seq_len)[None, :, None]
        bands = (emb_dim - 1) // 2
        w = 2 * math.pi * torch.linspace(0, seq_len - 1, seq_len)[None, :, None] / seq_len
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        # exp(-i f w) split into real and imaginary parts, as the reference builds it
        self.register_buffer("z", torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1))
        self.register_buffer("t", t)

    def forward(self, length: int) -> tuple[Tensor, Tensor]:
        return self.z[:, :length], self.t[:, :length]


class ExponentialModulation(nn.Module):
    """The decay window ``h * (exp(-|delta_c| t) + shift)``, with per-channel rates between ``log(target) /
    slow_decay_pct`` and ``log(target) / fast_decay_pct`` (a fixed buffer ``deltas`` of shape (1, 1, C))."""

    def __init__(self, channels: int, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5,
                 target: float = 1e-2, shift: float = 0.0, modulate: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.shift = shift
        self.modulate = modulate
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, channels)[None, None])

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        if not self.modulate:
            return h
        return h * (torch.exp(-t * self.deltas.abs()) + self.shift)


class HyenaFilter(nn.Module):
    """Implicit long filter ``(L, channels)`` plus the per-channel skip ``bias`` of the FFT convolution.

    Args:
        channels: filter channels (``d_model * (order - 1)``).
        seq_len: longest filter (the model's maximum length).
        emb_dim: positional features (odd, >= 3).
        filter_order: width of the filter MLP.
        num_inner_mlps: hidden-to-hidden layers of the MLP.
        w: initial sine frequency.
        modulate: apply the decay window.
        shift: added to the decay window (0 in the training code; the standalone/HF port uses 0.05).
    """

    def __init__(self, channels: int, seq_len: int, *, emb_dim: int = 5, filter_order: int = 64,
                 num_inner_mlps: int = 2, w: float = 10.0, modulate: bool = True,
                 shift: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.bias = nn.Parameter(torch.randn(channels))
        self.pos_emb = HyenaPositionalEmbedding(emb_dim, seq_len)
        self.sin = Sin(filter_order, w)
        # The reference's nn.Sequential puts the linears at even indices (the shared sine at the odd ones):
        # keep those indices as names so the public state dicts map one to one.
        widths = [emb_dim] + [filter_order] * (num_inner_mlps + 1)
        linears = {str(2 * i): nn.Linear(a, b) for i, (a, b) in enumerate(itertools.pairwise(widths))}
        linears[str(2 * (num_inner_mlps + 1))] = nn.Linear(filter_order, channels, bias=False)
        self.implicit_filter = nn.ModuleDict(linears)
        self.modulation = ExponentialModulation(channels, shift=shift, modulate=modulate)

    def filter(self, length: int) -> Tensor:
        """The filter for the first ``length`` positions, ``(length, channels)``."""
        z, t = self.pos_emb(length)
        h = z.to(self.bias.dtype)
        layers = list(self.implicit_filter.values())
        for layer in layers[:-1]:
            h = self.sin(layer(h))
        return self.modulation(t, layers[-1](h))[0]


@register_mixer("hyena")
class HyenaOperator(nn.Module):
    """Hyena mixer ``(B, L, D) -> (B, L, D)``, causal by construction.

    Args:
        dim: width ``D``.
        order: depth of the gating recurrence (2 in every HyenaDNA checkpoint).
        filter_order: width of the implicit filter's MLP.
        l_max: longest sequence (the filter's length); longer inputs raise.
        emb_dim: positional features of the filter.
        short_filter_order: kernel of the short depthwise causal convolution.
        num_inner_mlps: hidden layers of the filter MLP.
        activation_freq: initial sine frequency (the configs' ``w``).
        modulate: apply the filter's decay window.
        modulation_shift: the window's shift (training code: 0.0).
        dropout: dropout on each gated value before its long convolution.
    """

    def __init__(self, dim: int, order: int = 2, filter_order: int = 64, l_max: int = 1026, emb_dim: int = 5,
                 short_filter_order: int = 3, num_inner_mlps: int = 2, activation_freq: float = 10.0,
                 modulate: bool = True, modulation_shift: float = 0.0, dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        for name, value, minimum in (("dim", dim, 1), ("order", order, 2), ("filter_order", filter_order, 1),
                                     ("l_max", l_max, 1), ("short_filter_order", short_filter_order, 1),
                                     ("num_inner_mlps", num_inner_mlps, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"hyena: {name} must be an integer >= {minimum}, got {value!r}.")
        self.d_model, self.order, self.l_max = dim, order, l_max
        inner = dim * (order + 1)
        self.in_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(dim, dim)
        # padding k - 1 on both sides, then keep the first L outputs: position l sees l-k+1 .. l only
        self.short_filter = nn.Conv1d(inner, inner, short_filter_order, padding=short_filter_order - 1, groups=inner)
        self.filter_fn = HyenaFilter(dim * (order - 1), l_max, emb_dim=emb_dim, filter_order=filter_order,
                                     num_inner_mlps=num_inner_mlps, w=activation_freq, modulate=modulate,
                                     shift=modulation_shift)  # fmt: skip
        self.dropout = nn.Dropout(dropout)

    def forward(self, u: Tensor) -> Tensor:
        length = u.shape[-2]
        if length > self.l_max:
            raise ValueError(f"Hyena: a sequence of length {length} is longer than l_max={self.l_max}, the length "
                             "of the implicit filter; build the model with a larger max length.")  # fmt: skip
        uc = self.short_filter(self.in_proj(u).transpose(1, 2))[..., :length]
        *gates, v = uc.split(self.d_model, dim=1)
        n = self.order - 1
        # channel c of the filter is (v, o) = divmod(c, order - 1): the training code's "(v o)" layout
        k = self.filter_fn.filter(length).view(length, self.d_model, n).permute(2, 1, 0)
        skip = self.filter_fn.bias.view(self.d_model, n).t()
        for o, x_i in enumerate(reversed(gates[1:])):
            v = fft_causal_conv(self.dropout(v * x_i), k[o], skip[o])
        return self.out_proj((v * gates[0]).transpose(1, 2))

    def extra_repr(self) -> str:
        return f"order={self.order}, l_max={self.l_max}"

