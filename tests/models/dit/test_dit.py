"""The DiT family against the official DiT's equations (written out here) and the official weight layout."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from derf_zoo import Derf, create_model
from derf_zoo.models.dit import OFFICIAL_LAYOUT, DiT, from_official, to_official
from derf_zoo.models.dit.embedders import sincos_pos_embed_2d, timestep_embedding
from derf_zoo.norms.layers import DyT

TINY = {"input_size": 8, "patch_size": 2, "in_channels": 3, "hidden_size": 32, "depth": 2, "num_heads": 4,
        "num_classes": 5}  # fmt: skip


# ---- a reference DiT forward, from facebookresearch/DiT models.py, on an official-layout state dict ----------


def _official_pos_embed(dim, grid):
    # MAE / official DiT get_2d_sincos_pos_embed, in numpy as they write it
    gw, gh = np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)
    g = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid, grid)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)


def _reference_norm(x, sd, prefix, kind):
    if kind == "layernorm":
        return F.layer_norm(x, x.shape[-1:], eps=1e-6)
    alpha = sd[f"{prefix}.alpha"]
    return torch.erf(alpha * x + sd[f"{prefix}.shift"]) if kind == "derf" else torch.tanh(alpha * x)


def reference_dit(sd, x, t, y, *, patch, heads, kind="layernorm", freq_shift=0):
    lin = lambda h, name: F.linear(h, sd[f"{name}.weight"], sd[f"{name}.bias"])  # noqa: E731
    mod = lambda h, shift, scale: h * (1 + scale[:, None]) + shift[:, None]  # noqa: E731
    h = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    h = h + sd["pos_embed"]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - freq_shift))
    args = t[:, None].float() * freqs[None]
    tf = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    c = lin(F.silu(lin(tf, "t_embedder.mlp.0")), "t_embedder.mlp.2") + sd["y_embedder.embedding_table.weight"][y]
    n, length, d = h.shape
    for i in range(1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))):
        b = f"blocks.{i}"
        s1, sc1, g1, s2, sc2, g2 = lin(F.silu(c), f"{b}.adaLN_modulation.1").chunk(6, dim=1)
        a = mod(_reference_norm(h, sd, f"{b}.norm1", kind), s1, sc1)
        q, k, v = lin(a, f"{b}.attn.qkv").reshape(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(d // heads)).softmax(-1) @ v
        h = h + g1[:, None] * lin(att.transpose(1, 2).reshape(n, length, d), f"{b}.attn.proj")
        m = mod(_reference_norm(h, sd, f"{b}.norm2", kind), s2, sc2)
        h = h + g2[:, None] * lin(F.gelu(lin(m, f"{b}.mlp.fc1"), approximate="tanh"), f"{b}.mlp.fc2")
    shift, scale = lin(F.silu(c), "final_layer.adaLN_modulation.1").chunk(2, dim=1)
    h = lin(mod(_reference_norm(h, sd, "final_layer.norm_final", kind), shift, scale), "final_layer.linear")
    grid = int(length**0.5)
    out_c = h.shape[-1] // (patch * patch)
    h = h.reshape(n, grid, grid, patch, patch, out_c)
    return torch.einsum("nhwpqc->nchpwq", h).reshape(n, out_c, grid * patch, grid * patch)


def _randomise(model):
    # Non-zero everything (zero-init would hide a wrong gate or output mapping), alphas/shifts off their init.
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("alpha", "shift")):
                p.copy_(0.3 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _inputs(model, n=3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, model.in_channels, model.input_size, model.input_size, generator=g)
    return x, torch.tensor([0, 517, 999])[:n], torch.tensor([0, 4, 5])[:n] % (model.num_classes + 1)


@pytest.mark.parametrize("norm", ["layernorm", "derf", "dyt"])
def test_matches_reference_equations_on_official_layout(norm):
    model = _randomise(DiT(**TINY, norm=norm)).eval()
    sd = to_official(model)
    assert "blocks.1.attn.qkv.weight" in sd and "final_layer.adaLN_modulation.1.weight" in sd
    x, t, y = _inputs(model)
    with torch.no_grad():
        ours = model(x, t, y)
        ref = reference_dit(sd, x, t, y, patch=2, heads=4, kind=norm)
    assert ours.shape == (3, 6, 8, 8)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)
    print(f"max |ours - reference| ({norm}): {(ours - ref).abs().max():.2e}")


def test_from_official_round_trip_and_inference():
    model = _randomise(DiT(**TINY, norm="derf")).eval()
    back = from_official(to_official(model), num_heads=4).eval()
    assert back.norm_specs == {"attn": "derf", "mlp": "derf", "final": "derf"}
    assert back.learn_sigma and back.num_classes == 5 and back.backbone.depth == 2
    x, t, y = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(back(x, t, y), model(x, t, y), rtol=0, atol=0)
    assert isinstance(back.backbone.blocks[0].norm1, Derf) and back.backbone.blocks[0].norm1.weight is None


def _as_module(state_dict):
    """An nn.Module whose state_dict() is ``state_dict`` (the official DiT's layout, without its code)."""
    root = torch.nn.Module()
    for key, value in state_dict.items():
        *path, name = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(name, torch.nn.Parameter(value.clone(), requires_grad=False))
    return root


def test_from_official_takes_the_module_as_from_diffusers_does():
    model = _randomise(DiT(**TINY, norm="derf")).eval()
    official = _as_module(to_official(model)).train()
    back = from_official(official, num_heads=4)
    assert back.training  # the module's mode, as from_diffusers keeps it
    x, t, y = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x, t, y), model(x, t, y), rtol=0, atol=0)


def test_official_layout_keys_round_trip():
    w = torch.zeros(1)
    keys = ("blocks.3.attn.qkv.weight", "blocks.0.adaLN_modulation.1.bias", "blocks.2.norm1.alpha",
            "final_layer.adaLN_modulation.1.weight", "t_embedder.mlp.2.bias", "pos_embed")  # fmt: skip
    ours = OFFICIAL_LAYOUT.to_ours(dict.fromkeys(keys, w))
    assert set(OFFICIAL_LAYOUT.to_theirs(ours)) == set(keys)
    assert {"backbone.blocks.3.mixer.qkv.weight", "backbone.blocks.0.modulation.linear.bias"} <= set(ours)


def test_positions_and_timestep_embedding_match_the_official_formulas():
    torch.testing.assert_close(sincos_pos_embed_2d(32, 4), torch.from_numpy(_official_pos_embed(32, 4)).float())
    t = torch.tensor([0.0, 3.0, 999.0])
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
    ref = torch.cat([torch.cos(t[:, None] * freqs), torch.sin(t[:, None] * freqs)], dim=-1)
    torch.testing.assert_close(timestep_embedding(t, 256), ref)


def test_affine_free_sites_and_init_flags():
    model = DiT(**TINY, norm="derf", adaln_zero_init=False, final_zero_init=False)
    for m in (model.backbone.blocks[0].norm1, model.backbone.blocks[1].norm2, model.final_layer.norm_final):
        assert isinstance(m, Derf) and m.weight is None and m.bias is None
    assert [m.norm_site for m in (model.backbone.blocks[0].norm1, model.backbone.blocks[0].norm2,
                                  model.final_layer.norm_final)] == ["attn", "mlp", "final"]  # fmt: skip
    assert model.backbone.blocks[0].modulation.linear.weight.abs().sum() > 0
    assert model.final_layer.linear.weight.abs().sum() > 0
    ln = DiT(**TINY)
    assert ln.backbone.blocks[1].modulation.linear.weight.abs().sum() == 0
    assert ln.final_layer.linear.weight.abs().sum() == 0 and ln.final_layer.modulation.linear.bias.abs().sum() == 0
    assert ln.backbone.blocks[0].norm1.weight is None  # affine-free LayerNorm, as the official
    # the official init: t-embedder and label table normal(0.02), the rest xavier with zero bias
    big = DiT(**{**TINY, "hidden_size": 256, "num_heads": 4})
    assert abs(big.t_embedder.mlp[0].weight.std().item() - 0.02) < 2e-3
    assert abs(big.y_embedder.embedding_table.weight.std().item() - 0.02) < 5e-3
    fc1 = big.backbone.blocks[0].mlp.fc1.weight
    assert abs(fc1.std().item() - math.sqrt(2 / (fc1.shape[0] + fc1.shape[1]))) < 2e-3
    assert big.backbone.blocks[0].mixer.qkv.bias.abs().sum() == 0


def test_paper_rows_hold_the_papers_init():
    # shared/PAPER.md §3.2: LN keeps adaLN-Zero everywhere; Derf/DyT keep block zero-init only for DiT-B and never
    # zero the final layer; alpha_0 = 1.0 for DiT-XL/2. Checked on the registered arguments (no giant builds).
    from derf_zoo.models.dit import entrypoints as dit

    calls = {}

    def fake_build(cls, name, *, pretrained, model_args, data_cfg, **kwargs):
        calls[name] = {**model_args, **kwargs}

    original = dit.build_model
    dit.build_model = fake_build
    try:
        for name in ("dit_b_4_derf", "dit_b_4_dyt", "dit_b_4_ln", "dit_l_4_derf", "dit_l_4_dyt", "dit_l_4_ln",
                     "dit_xl_2_derf", "dit_xl_2_dyt", "dit_xl_2_ln"):  # fmt: skip
            create_model(name)
    finally:
        dit.build_model = original
    assert calls["dit_b_4_ln"]["adaln_zero_init"] and calls["dit_b_4_ln"]["final_zero_init"]
    assert calls["dit_b_4_derf"]["adaln_zero_init"] and not calls["dit_b_4_derf"]["final_zero_init"]
    assert not calls["dit_l_4_derf"]["adaln_zero_init"] and not calls["dit_l_4_dyt"]["final_zero_init"]
    assert calls["dit_l_4_ln"]["adaln_zero_init"] and calls["dit_xl_2_ln"]["final_zero_init"]
    assert calls["dit_xl_2_derf"]["norm"] == "derf(alpha=1.0)" and calls["dit_xl_2_dyt"]["norm"] == "dyt(alpha=1.0)"
    assert calls["dit_l_4_derf"]["norm"] == "derf" and calls["dit_xl_2_ln"]["norm"] == "layernorm"
    assert (calls["dit_xl_2_derf"]["hidden_size"], calls["dit_xl_2_derf"]["depth"], calls["dit_xl_2_derf"]
            ["patch_size"]) == (1152, 28, 2)  # fmt: skip


def test_dit_xl_2_parameter_count_matches_the_official():
    # ECOSYSTEM.md §0.12: 674,834,720 trainable parameters + the 294,912-entry fixed pos_embed. Counted from
    # depth-1 and depth-2 builds (every block is the same size) to keep the test small.
    def count(depth):
        model = DiT(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=depth, num_heads=16)
        return sum(p.numel() for p in model.parameters()), model.pos_embed.numel()

    (one, pos), (two, _) = count(1), count(2)
    assert one + 27 * (two - one) == 674_834_720 and pos == 294_912


def test_nano_entry_points_build_and_run():
    for name, kind in (("dit_nano_derf", Derf), ("dit_nano_ln", torch.nn.LayerNorm)):
        model = create_model(name).eval()
        assert isinstance(model.backbone.blocks[0].norm1, kind)
        x = torch.randn(2, 1, 8, 8)
        with torch.no_grad():
            out = model(x, torch.tensor([1, 500]), torch.tensor([3, 9]))
        assert out.shape == (2, 2, 8, 8) and torch.isfinite(out).all()
    assert create_model("dit_s_2", norm="dyt", input_size=8, depth=1).backbone.blocks[0].norm1.__class__ is DyT


def test_label_dropout_and_null_class():
    model = DiT(**TINY).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 10, None), model(x, 10, torch.tensor([5, 5])))
        forced = model.y_embedder(torch.tensor([1, 2]), False, force_drop_ids=torch.tensor([1, 0]))
        torch.testing.assert_close(forced, model.y_embedder.embedding_table.weight[[5, 2]])
    model.train()
    torch.manual_seed(0)
    dropped = model.y_embedder(torch.zeros(2000, dtype=torch.long), True)
    rate = (dropped == model.y_embedder.embedding_table.weight[5]).all(-1).float().mean().item()
    assert 0.07 < rate < 0.13
    assert DiT(**TINY, class_dropout_prob=0.0).y_embedder.embedding_table.num_embeddings == 5


def test_cfg_forward_guides_the_conditional_half():
    model = _randomise(DiT(**TINY)).eval()
    x = torch.randn(2, 3, 8, 8)
    xx, t, y = torch.cat([x, x]), torch.tensor([7, 7, 7, 7]), torch.tensor([1, 2, 5, 5])
    with torch.no_grad():
        out = model.forward_with_cfg(xx, t, y, cfg_scale=3.0)
        cond, uncond = model(x, t[:2], y[:2]), model(x, t[:2], y[2:])
    torch.testing.assert_close(out[:2, :3], uncond[:, :3] + 3.0 * (cond[:, :3] - uncond[:, :3]))
    torch.testing.assert_close(out[:2, 3:], cond[:, 3:])


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        DiT(**{**TINY, "input_size": 10, "patch_size": 4})
    model = DiT(**TINY)
    with pytest.raises(ValueError, match=r"Class labels must be in \[0, 5\]"):
        model(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.tensor([6]))
    with pytest.raises(ValueError, match=r"in \[0, 4\]"):
        DiT(**TINY, class_dropout_prob=0.0)(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.tensor([5]))
    with pytest.raises(ValueError, match="PatchEmbed expects images of shape"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="Timesteps must be"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2, 3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="does not look like an official DiT"):
        from_official({"weight": torch.ones(2)})
    sd = to_official(DiT(**TINY))
    sd["blocks.1.mlp.fc1.weight"] = torch.zeros(7, 32)
    with pytest.raises(ValueError, match="shape mismatches"):
        from_official(sd, num_heads=4)


def test_save_pretrained_round_trip(tmp_path):
    from derf_zoo.models import from_pretrained

    model = _randomise(create_model("dit_nano_derf", depth=1)).eval()
    folder = model.save_pretrained(tmp_path / "dit")
    loaded = from_pretrained(folder).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 800]), torch.tensor([1, 10])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, y), model(x, t, y), rtol=0, atol=0)
    assert loaded.pretrained_cfg["task_type"] == "unconditional-image-generation"
