"""The shared attention layer against a naive softmax(QK^T / sqrt(d)) V written out with the layer's own weights:
no mask, causal, padding, bool and additive pair masks, and the key/value cache against the full causal pass."""

import math

import pytest
import torch
from torch import nn

from derf_zoo.layers.attention import Attention, KVCache


def naive_attention(attn: Attention, x: torch.Tensor, allowed: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """softmax(q k^T / sqrt(head_dim) + bias, over the allowed keys) v, head by head, then the output projection.

    ``allowed``: bool, broadcastable to (B, heads, L, L), True where a query may see a key.
    """
    b, n, d = x.shape
    h, hd = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).split(d, dim=-1)  # the fused projection's rows are [q; k; v], each heads x head_dim
    q, k, v = (t.reshape(b, n, h, hd).transpose(1, 2) for t in (q, k, v))
    logits = q @ k.transpose(-2, -1) / math.sqrt(hd)
    if bias is not None:
        logits = logits + bias
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    out = logits.softmax(dim=-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(b, n, d))


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(2, 6, 16)


@pytest.mark.parametrize("causal", [False, True])
def test_matches_the_naive_reference(x, causal):
    attn = Attention(16, num_heads=4, causal=causal).eval()
    allowed = torch.ones(6, 6, dtype=torch.bool).tril() if causal else None
    torch.testing.assert_close(attn(x), naive_attention(attn, x, allowed), atol=1e-5, rtol=1e-5)


def test_matches_torch_multihead_attention(x):
    # Same weights in nn.MultiheadAttention's layout (in_proj = our qkv, out_proj = our proj).
    attn = Attention(16, num_heads=4).eval()
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    torch.testing.assert_close(attn(x), mha(x, x, x, need_weights=False)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_mask(x, causal):
    attn = Attention(16, num_heads=2, causal=causal).eval()
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    allowed = ~padding[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(6, 6, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x, key_padding_mask=padding), naive_attention(attn, x, allowed),
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    # A padded key changes nothing the real tokens see.
    changed = x.clone()
    changed[1, 4:] = 100.0
    torch.testing.assert_close(attn(changed, key_padding_mask=padding)[1, :4], attn(x, key_padding_mask=padding)[1, :4],
                               atol=1e-5, rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("shape", [(6, 6), (2, 6, 6), (2, 2, 6, 6), (1, 2, 6, 6)])
def test_bool_pair_mask_true_means_blocked(x, shape):
    attn = Attention(16, num_heads=2).eval()
    torch.manual_seed(1)
    blocked = torch.rand(shape) < 0.4
    blocked[..., 0] = False  # every query sees at least one key (a fully blocked row is NaN in both)
    allowed = ~blocked[:, None] if blocked.dim() == 3 else ~blocked  # (B, L, L) is per batch item, every head
    torch.testing.assert_close(attn(x, attn_mask=blocked), naive_attention(attn, x, allowed), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_additive_float_mask(x, causal):
    attn = Attention(16, num_heads=2, causal=causal).eval()
    torch.manual_seed(2)
    bias = torch.randn(6, 6)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril() if causal else None
    torch.testing.assert_close(attn(x, attn_mask=bias), naive_attention(attn, x, allowed, bias=bias),
                               atol=1e-5, rtol=1e-5)  # fmt: skip


def test_kv_cache_token_by_token_equals_the_full_causal_pass(x):
    attn = Attention(16, num_heads=4, causal=True).eval()
    full = attn(x)
    cache = KVCache(max_length=6)
    prefix = attn(x[:, :3], kv_cache=cache)  # a prompt of 3, then one token at a time
    steps = [attn(x[:, i : i + 1], kv_cache=cache) for i in range(3, 6)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 6
    with pytest.raises(ValueError, match="exceed the cache's max_length=6"):
        attn(x[:, :1], kv_cache=cache)
    with pytest.raises(ValueError, match="cannot be combined with key_padding_mask"):
        attn(x, kv_cache=KVCache(), key_padding_mask=torch.zeros(2, 6, dtype=torch.bool))


def test_attention_dropout_only_in_training(x):
    attn = Attention(16, num_heads=2, attn_drop=0.5)
    torch.testing.assert_close(attn.eval()(x), naive_attention(attn, x), atol=1e-5, rtol=1e-5)
    torch.manual_seed(0)
    assert not torch.allclose(attn.train()(x), naive_attention(attn, x), atol=1e-3)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="dim 10 is not divisible by num_heads 4"):
        Attention(10, num_heads=4)
    attn = Attention(16, num_heads=2)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 6\), got \(2, 5\)"):
        attn(torch.randn(2, 6, 16), key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
