import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from derf_zoo import Derf, Transformer, TransformerBlock
from derf_zoo.layers import AdaLNModulation, Attention, Mlp
from derf_zoo.norms import LayerNorm
from derf_zoo.tasks import param_groups


def test_shapes_and_norm_sites():
    model = Transformer(48, 2, num_heads=4, norm={"attn": "derf", "mlp": "dyt", "final": "layernorm"})
    assert model(torch.randn(3, 7, 48)).shape == (3, 7, 48)
    assert type(model.norm).__name__ == "LayerNorm"
    assert type(model.blocks[0].norm1).__name__ == "Derf" and type(model.blocks[1].norm2).__name__ == "DyT"


def test_bad_token_shape():
    with pytest.raises(ValueError, match=r"\(B, L, 48\), got \(3, 7, 32\)"):
        Transformer(48, 1, num_heads=4)(torch.randn(3, 7, 32))
    with pytest.raises(ValueError, match="not divisible"):
        Attention(48, num_heads=5)


def test_causal_attention_never_looks_ahead():
    model = Transformer(32, 2, num_heads=4, norm="derf", causal=True).eval()
    x = torch.randn(2, 10, 32)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 32)
    y, y2 = model(x), model(changed)
    torch.testing.assert_close(y[:, :6], y2[:, :6])
    assert not torch.allclose(y[:, 6:], y2[:, 6:])


def test_key_padding_mask_hides_padding():
    attn = Attention(16, 2).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.tensor([[False, False, False, False, True, True]])
    padded = x.clone()
    padded[:, 4:] = 100.0
    torch.testing.assert_close(attn(x, mask)[:, :4], attn(padded, mask)[:, :4])
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        attn(x, mask[:, :3])


def test_zero_gate_modulation_is_identity_and_needs_cond():
    model = Transformer(32, 3, num_heads=4, norm="derf(affine=False)", cond_dim=16)  # adaLN-Zero init
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(model.blocks[0](x, torch.randn(2, 16)), x)
    with torch.no_grad():  # non-zero gates: not the identity any more
        model.blocks[0].modulation.linear.bias.normal_()
    assert not torch.allclose(model.blocks[0](x, torch.randn(2, 16)), x)
    with pytest.raises(ValueError, match="conditioning vector"):
        model.blocks[0](x)


def test_layernorm_block_equals_hand_written_pre_ln_block():
    torch.manual_seed(3)
    dim, heads = 32, 4
    block = TransformerBlock(
        dim, Attention(dim, heads), Mlp(dim, 4 * dim), LayerNorm(dim, eps=1e-6), LayerNorm(dim, eps=1e-6)
    ).eval()
    for p in block.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(2, 9, dim)

    def reference(x):
        h = F.layer_norm(x, (dim,), block.norm1.weight, block.norm1.bias, 1e-6)
        qkv = h @ block.mixer.qkv.weight.T + block.mixer.qkv.bias
        q, k, v = qkv.view(2, 9, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (dim // heads) ** 0.5, -1) @ v
        x = x + (att.transpose(1, 2).reshape(2, 9, dim) @ block.mixer.proj.weight.T + block.mixer.proj.bias)
        h = F.layer_norm(x, (dim,), block.norm2.weight, block.norm2.bias, 1e-6)
        h = F.gelu(h @ block.mlp.fc1.weight.T + block.mlp.fc1.bias)
        return x + h @ block.mlp.fc2.weight.T + block.mlp.fc2.bias

    torch.testing.assert_close(block(x), reference(x), rtol=1e-5, atol=1e-5)


def test_block_without_mlp_and_custom_mixer():
    model = Transformer(16, 2, mlp_ratio=0, mixer=lambda dim, i: nn.Linear(dim, dim), norm="rmsnorm")
    assert model.blocks[0].mlp is None and not hasattr(model.blocks[0], "norm2")
    assert model(torch.randn(2, 4, 16)).shape == (2, 4, 16)


def test_stochastic_depth_grows_linearly():
    model = Transformer(16, 5, num_heads=2, drop_path_rate=0.4)
    rates = [getattr(b.drop_path1, "p", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_no_decay_groups_hold_exactly_the_1d_parameters():
    model = Transformer(32, 2, num_heads=4, norm="derf", layer_scale=1e-5, cond_dim=8)
    decay, no_decay = param_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    expected_no_decay = {n for n, p in model.named_parameters() if p.ndim < 2}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == expected_no_decay
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if p.ndim >= 2}
    assert any(n.endswith("alpha") for n in expected_no_decay) and any(n.endswith("shift") for n in expected_no_decay)


def test_no_decay_also_honours_timm_no_weight_decay():
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    _, no_decay = param_groups(model, 0.05)
    assert any(p is model.pos_embed for p in no_decay["params"])


@pytest.mark.slow
def test_timm_accepts_derf_as_norm_layer():
    model = timm.create_model("vit_tiny_patch16_224", norm_layer=Derf, num_classes=10)
    assert sum(isinstance(m, Derf) for m in model.modules()) == 25
    model(torch.randn(2, 3, 224, 224)).sum().backward()
    assert model.blocks[0].norm1.alpha.grad is not None


def test_adaln_modulation_chunks():
    mod = AdaLNModulation(8, 16, chunks=6, zero_init=False)
    out = mod(torch.randn(3, 8))
    assert len(out) == 6 and all(o.shape == (3, 16) for o in out)


def test_mlp_hidden_dim_sets_an_exact_width_and_zero_drops_the_mlp():
    model = Transformer(16, 2, num_heads=2, mlp_hidden_dim=37)
    assert model.blocks[0].mlp.fc1.out_features == 37 and model.blocks[1].mlp.fc2.in_features == 37
    torch.manual_seed(0)
    by_ratio = Transformer(16, 1, num_heads=2, mlp_ratio=2.5).state_dict()
    torch.manual_seed(0)
    by_width = Transformer(16, 1, num_heads=2, mlp_hidden_dim=40).state_dict()  # the same model, stated exactly
    assert list(by_ratio) == list(by_width) and all(torch.equal(by_ratio[k], by_width[k]) for k in by_ratio)
    mixer_only = Transformer(16, 2, mlp_hidden_dim=0, mixer=lambda dim, i: nn.Linear(dim, dim))
    assert mixer_only.blocks[0].mlp is None and mixer_only.sites == ("attn", "final")
    for bad in (-1, 2.5, True, "40"):
        with pytest.raises(ValueError, match=r"mlp_hidden_dim must be an integer >= 0"):
            Transformer(16, 1, num_heads=2, mlp_hidden_dim=bad)
    with pytest.raises(ValueError, match=r"width int\(16 \* 0.01\) = 0"):
        Transformer(16, 1, num_heads=2, mlp_ratio=0.01)


def test_mlp_drop_acts_after_the_activation_only():
    model = Transformer(16, 1, num_heads=2, proj_drop=0.2, mlp_drop=0.3)
    mlp = model.blocks[0].mlp
    assert (mlp.drop1.p, mlp.drop2.p, model.blocks[0].mixer.proj_drop.p) == (0.3, 0.2, 0.2)
    assert Transformer(16, 1, num_heads=2, proj_drop=0.2).blocks[0].mlp.drop1.p == 0.2  # None: proj_drop
    dropped = Transformer(16, 1, num_heads=2, mlp_drop=1.0).train()  # every hidden unit dropped: fc2's bias is left
    mlp = dropped.blocks[0].mlp
    with torch.no_grad():
        mlp.fc2.bias.normal_()
    torch.testing.assert_close(mlp(torch.randn(2, 3, 16)), mlp.fc2.bias.expand(2, 3, 16))
    assert Mlp(8, 16, drop=(0.1, 0.4)).drop1.p == 0.1 and Mlp(8, 16, drop=(0.1, 0.4)).drop2.p == 0.4


def test_final_norm_none_leaves_the_final_site_to_the_family():
    model = Transformer(16, 1, num_heads=2, norm="derf", final_norm="none")
    assert isinstance(model.norm, nn.Identity) and model.sites == ("attn", "mlp")
    x = torch.randn(2, 3, 16)
    block_only = model.blocks[0](x)
    torch.testing.assert_close(model(x), block_only)
    after = Transformer(16, 1, num_heads=2, norm="derf")
    assert after.sites == ("attn", "mlp", "final") and after.norm.norm_site == "final"
    with pytest.raises(ValueError, match="norm site"):  # a site the backbone does not have is refused, not ignored
        Transformer(16, 1, num_heads=2, norm={"attn": "derf", "mlp": "derf", "final": "derf"}, final_norm="none")
    for bad in (False, "before", "inside"):
        with pytest.raises(ValueError, match=r"final_norm must be one of 'after', 'none'"):
            Transformer(16, 1, num_heads=2, final_norm=bad)


def test_a_mixer_only_block_has_no_mlp_site():
    model = Transformer(16, 2, mlp_ratio=0, mixer=lambda dim, i: nn.Linear(dim, dim), norm={"attn": "rmsnorm",
                        "final": "derf"})  # fmt: skip
    assert model.sites == ("attn", "final") and {m.norm_site for m in model.modules() if hasattr(m, "norm_site")} == {
        "attn", "final"}  # fmt: skip
    with pytest.raises(ValueError, match="norm site"):
        Transformer(16, 2, mlp_ratio=0, mixer=lambda dim, i: nn.Linear(dim, dim),
                    norm={"attn": "rmsnorm", "mlp": "rmsnorm", "final": "derf"})  # fmt: skip


def test_before_block_runs_before_each_kept_block_and_under_checkpointing():
    torch.manual_seed(0)
    model = Transformer(16, 3, num_heads=2, norm="derf", drop_path_rate=0.0)
    x = torch.randn(2, 5, 16, requires_grad=True)

    def swap(h):
        return torch.cat([h[..., 8:], h[..., :8]], dim=-1)

    expected = x
    for block in model.blocks:  # the loop Caduceus-PS wrote by hand before
        expected = block(swap(expected))
    expected = model.norm(expected)
    torch.testing.assert_close(model(x, before_block=swap), expected)
    (grad_plain,) = torch.autograd.grad(model(x, before_block=swap).sum(), x)
    model.set_grad_checkpointing(True)
    out = model(x, before_block=swap)
    (grad_ckpt,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad_ckpt, grad_plain)
    hook_calls, block_runs = [], []
    dropping = Transformer(16, 8, num_heads=2, layer_drop=0.5).train()
    for block in dropping.blocks:
        block.register_forward_pre_hook(lambda module, args: block_runs.append(1))
    dropping(torch.randn(1, 2, 16), before_block=lambda h: hook_calls.append(1) or h)
    assert 0 < len(hook_calls) == len(block_runs) < 8  # LayerDrop skipped some blocks, and their hooks with them
    with pytest.raises(ValueError, match=r"\(B, L, 16\)"):
        model(torch.randn(2, 5, 8), before_block=swap)
