"""The Hyena operator alone against a loop written from its definition (Poli et al., 2023): in-projection, a
depthwise causal short convolution, then ``v = sum_{s<=t} h[t - s] (v * x_i)[s] + D (v * x_i)[t]`` per gate,
direct sums instead of the FFT; and its implicit filter's positional features and decay window in closed form."""

import math

import pytest
import torch

from derf_zoo.models.hyenadna.hyena import ExponentialModulation, HyenaOperator, HyenaPositionalEmbedding


def naive_hyena(op: HyenaOperator, u: torch.Tensor) -> torch.Tensor:
    b, length, d = u.shape
    z = op.in_proj(u)  # (B, L, (order + 1) D)
    weight, bias = op.short_filter.weight[:, 0], op.short_filter.bias  # (C, k), (C,)
    k = weight.shape[1]
    short = torch.zeros(b, length, z.shape[-1], dtype=u.dtype)
    for t in range(length):  # position t sees t - k + 1 .. t
        short[:, t] = bias + sum(weight[:, j] * z[:, t - (k - 1) + j] for j in range(k) if t - (k - 1) + j >= 0)
    *gates, v = short.split(d, dim=-1)
    n = op.order - 1
    h, skip = op.filter_fn.filter(length), op.filter_fn.bias  # (L, D * n): channel c is (d, o) = divmod(c, n)
    for o, gate in enumerate(reversed(gates[1:])):
        x = v * gate
        channels = torch.arange(d) * n + o
        v = torch.stack([sum(h[t - s, channels] * x[:, s] for s in range(t + 1)) for t in range(length)], dim=1)
        v = v + skip[channels] * x
    return op.out_proj(v * gates[0])


@pytest.mark.parametrize("order", [2, 3])
def test_the_operator_matches_the_direct_loop(order):
    torch.manual_seed(order)
    op = HyenaOperator(4, order=order, filter_order=8, l_max=12).double().eval()
    u = torch.randn(2, 9, 4, dtype=torch.double)
    torch.testing.assert_close(op(u), naive_hyena(op, u), rtol=1e-9, atol=1e-9)


def test_positional_features_and_decay_window_in_closed_form():
    length, emb_dim = 6, 5
    z, t = HyenaPositionalEmbedding(emb_dim, length)(length)
    bands = (emb_dim - 1) // 2
    for pos in range(length):
        w = 2 * math.pi * pos / length
        freqs = [1e-4 + i * (bands - 1 - 1e-4) / (bands - 1) for i in range(bands)]  # linspace(1e-4, bands - 1)
        expected = [pos / (length - 1)] + [math.cos(-f * w) for f in freqs] + [math.sin(-f * w) for f in freqs]
        torch.testing.assert_close(z[0, pos], torch.tensor(expected), rtol=1e-5, atol=1e-6)
        assert t[0, pos, 0].item() == pytest.approx(pos / (length - 1))
    window = ExponentialModulation(3, fast_decay_pct=0.3, slow_decay_pct=1.5, target=1e-2)
    h = torch.ones(1, length, 3)
    slow, fast = abs(math.log(1e-2)) / 1.5, abs(math.log(1e-2)) / 0.3  # |log(target) / pct|, 3 channels between
    rates = [slow, (slow + fast) / 2, fast]
    expected = torch.tensor([[math.exp(-r * pos / (length - 1)) for r in rates] for pos in range(length)])
    torch.testing.assert_close(window(t, h)[0], expected.float(), rtol=1e-5, atol=1e-6)


def test_a_longer_input_than_the_filter_is_refused_by_name():
    op = HyenaOperator(4, filter_order=8, l_max=5)
    with pytest.raises(ValueError, match="length 6 is longer than l_max=5"):
        op(torch.zeros(1, 6, 4))
