"""What the backbone grew for every family: post-norm blocks, LayerDrop, gradient checkpointing, the mixer
slot, general attention masks, init that respects self-initialising modules, and cond checks."""

import copy

import pytest
import torch
from torch import nn

import derf_zoo
from derf_zoo import Transformer, TransformerBlock
from derf_zoo.layers import AdaLNModulation, Attention, Mlp, get_mixer, init_weights, list_mixers
from derf_zoo.norms import LayerNorm


def _block_like_torch(torch_layer: nn.TransformerEncoderLayer, dim: int, heads: int, norm_first: bool):
    """Our block with the weights of ``torch_layer`` (same math, our names)."""
    block = TransformerBlock(dim, Attention(dim, heads), Mlp(dim, 4 * dim), LayerNorm(dim, eps=1e-5),
                             LayerNorm(dim, eps=1e-5), norm_first=norm_first)  # fmt: skip
    sd = torch_layer.state_dict()
    block.load_state_dict({
        "mixer.qkv.weight": sd["self_attn.in_proj_weight"], "mixer.qkv.bias": sd["self_attn.in_proj_bias"],
        "mixer.proj.weight": sd["self_attn.out_proj.weight"], "mixer.proj.bias": sd["self_attn.out_proj.bias"],
        "mlp.fc1.weight": sd["linear1.weight"], "mlp.fc1.bias": sd["linear1.bias"],
        "mlp.fc2.weight": sd["linear2.weight"], "mlp.fc2.bias": sd["linear2.bias"],
        "norm1.weight": sd["norm1.weight"], "norm1.bias": sd["norm1.bias"],
        "norm2.weight": sd["norm2.weight"], "norm2.bias": sd["norm2.bias"],
    })  # fmt: skip
    return block.eval()


@pytest.mark.parametrize("norm_first", [True, False])
def test_block_equals_torch_transformer_encoder_layer(norm_first):
    torch.manual_seed(0)
    dim, heads = 32, 4
    reference = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=norm_first).eval()  # fmt: skip
    ours = _block_like_torch(reference, dim, heads, norm_first)
    x = torch.randn(3, 9, dim)
    padding = torch.zeros(3, 9, dtype=torch.bool)
    padding[1, 6:] = True
    pair_mask = torch.rand(9, 9) > 0.8
    pair_mask.fill_diagonal_(False)  # every query keeps at least itself
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours(x, key_padding_mask=padding), reference(x, src_key_padding_mask=padding),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
        torch.testing.assert_close(ours(x, attn_mask=pair_mask), reference(x, src_mask=pair_mask), atol=1e-5,
                                   rtol=1e-5)  # fmt: skip
        # torch's eval-mode fast path returns NaN for a float src_mask; dropout is 0, so compare in train mode.
        additive = torch.randn(9, 9)
        torch.testing.assert_close(ours.train()(x, attn_mask=additive), reference.train()(x, src_mask=additive),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip


def test_attention_mask_shapes_and_types_are_checked():
    attn = Attention(16, 2)
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match=r"attn_mask must broadcast to \(B=2, heads=2, L=5, L=5\)"):
        attn(x, attn_mask=torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool or floating point"):
        attn(x, attn_mask=torch.zeros(5, 5, dtype=torch.long))


def test_post_norm_transformer_and_modulation_needs_pre_norm():
    model = Transformer(32, 2, num_heads=4, norm="derf", norm_first=False, final_norm="none")
    assert model(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="needs norm_first=True"):
        Transformer(32, 1, num_heads=4, norm_first=False, cond_dim=8)


def test_cond_given_to_an_unmodulated_block_is_an_error():
    model = Transformer(16, 1, num_heads=2)
    with pytest.raises(ValueError, match="no adaLN modulation"):
        model(torch.randn(1, 3, 16), torch.randn(1, 8))


def test_layer_drop_skips_whole_blocks_in_training_only_and_identically_per_rank():
    torch.manual_seed(0)
    model = Transformer(16, 8, num_heads=2, layer_drop=0.5)
    seen = []
    for block in model.blocks:
        block.register_forward_hook(lambda m, a, o: seen.append(m))
    x = torch.randn(2, 3, 16)
    model.eval()
    model(x)
    assert len(seen) == 8  # never in evaluation
    model.train()
    counts = []
    for _ in range(20):
        seen.clear()
        model(x)
        counts.append(len(seen))
    assert min(counts) < 8 and 0 < sum(counts) / len(counts) < 8  # some blocks skipped, not all
    # Two replicas (two DDP ranks) built alike skip the same blocks at the same steps, whatever the global RNG.
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(1)
    kept_a = [[id(blk) for blk in a._kept_blocks()] for _ in range(5)]
    torch.manual_seed(2)
    kept_b = [[id(blk) for blk in b._kept_blocks()] for _ in range(5)]
    index = {id(blk): i for i, blk in enumerate(a.blocks)} | {id(blk): i for i, blk in enumerate(b.blocks)}
    assert [[index[i] for i in row] for row in kept_a] == [[index[i] for i in row] for row in kept_b]
    with pytest.raises(ValueError, match=r"layer_drop must be in \[0, 1\)"):
        Transformer(16, 1, num_heads=2, layer_drop=1.0)


def test_gradient_checkpointing_gives_the_same_numbers():
    torch.manual_seed(0)
    model = derf_zoo.vit_nano_derf(drop_path_rate=0.1)
    x = torch.randn(4, 1, 16, 16)
    grads = []
    for enable in (False, True):
        m = copy.deepcopy(model).train()
        m.set_grad_checkpointing(enable)
        torch.manual_seed(1)  # same drop-path draws
        m(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_family_init_leaves_self_initialising_modules_alone():
    torch.manual_seed(0)
    backbone = Transformer(32, 2, num_heads=4, cond_dim=8)  # adaLN-Zero blocks
    init_weights(backbone)  # the family default: every Linear trunc-normal(0.02)
    for block in backbone.blocks:
        assert torch.count_nonzero(block.modulation.linear.weight) == 0
        assert torch.count_nonzero(block.modulation.linear.bias) == 0
        assert 0.01 < float(block.mlp.fc1.weight.std()) < 0.03
    # Without adaLN-Zero the modulation takes the family's default like any other Linear.
    plain = AdaLNModulation(8, 32, zero_init=False)
    init_weights(nn.Sequential(plain))
    assert 0.01 < float(plain.linear.weight.std()) < 0.03


def test_mixer_slot_takes_specs():
    assert "attention" in list_mixers()
    causal = Transformer(16, 1, num_heads=2, mixer="attention(causal=True)").eval()
    assert causal.blocks[0].mixer.causal and causal.blocks[0].mixer.num_heads == 2
    from_mapping = Transformer(16, 1, num_heads=2, mixer={"name": "attention", "num_heads": 4})
    assert from_mapping.blocks[0].mixer.num_heads == 4  # the spec wins over the backbone's argument
    custom = Transformer(16, 2, num_heads=2, mixer=lambda dim, i: nn.Linear(dim, dim))  # Python callables still work
    assert isinstance(custom.blocks[1].mixer, nn.Linear)
    with pytest.raises(ValueError, match=r"Unknown mixer 'atention'. Did you mean 'attention'"):
        get_mixer("atention")
    with pytest.raises(ValueError, match="keyword for mixer 'attention'"):
        get_mixer("attention(heads=2)")
    assert Transformer(16, 1, num_heads=2, mixer="attention(causal=false)").blocks[0].mixer.causal is False
    with pytest.raises(ValueError, match="causal must be true or false, got 'yes'"):
        get_mixer("attention(causal=yes)")
