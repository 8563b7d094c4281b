"""DiT's official and diffusers layouts both ways: round trips, the registered layouts against from_official /
from_diffusers, diffusers loading to_diffusers' model strictly, and official training checkpoints read weights-only."""

import argparse
import logging

import pytest
import torch

from derf_zoo import create_model
from derf_zoo.models import get_family
from derf_zoo.models.dit import OFFICIAL_LAYOUT, DiT, from_official, to_official
from derf_zoo.weights import LayoutError, load_layout

TINY = {"input_size": 8, "patch_size": 2, "in_channels": 3, "hidden_size": 32, "depth": 3, "num_heads": 4,
        "num_classes": 5}  # fmt: skip


def _random(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # nothing zero or at its default, so a mix-up shows
        for name, p in model.named_parameters():
            p.copy_(0.5 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("alpha") else
                    0.2 * torch.randn(p.shape, generator=g))  # fmt: skip
    return model.eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 3, 8, 8, generator=g), torch.tensor([0, 317, 999]), torch.tensor([0, 4, 5])


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("norm", ["layernorm", "derf"])
def test_official_round_trips_are_exact(norm):
    model = _random(DiT(**TINY, norm=norm))
    theirs = to_official(model)  # the official key list (test_dit checks it against the official equations)
    _same(OFFICIAL_LAYOUT.to_theirs(OFFICIAL_LAYOUT.to_ours(theirs)), theirs)
    back = from_official(theirs, num_heads=4)
    _same(back.state_dict(), model.state_dict())
    _same(to_official(back), theirs)


@pytest.mark.parametrize("norm", ["layernorm", "derf"])
def test_the_registered_official_layout_loads_what_from_official_does(norm):
    model = _random(DiT(**TINY, norm=norm))
    imported = from_official(to_official(model), num_heads=4).eval()
    built = create_model("dit_s_2", **TINY, norm=norm).eval()
    load_layout(built, to_official(model), get_family("dit").layout("official"), source="test")
    _same(built.state_dict(), imported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(built(*_inputs()), imported(*_inputs()), rtol=0, atol=0)


def test_official_bad_keys_are_named():
    sd = to_official(DiT(**TINY))
    with pytest.raises(LayoutError, match=r"match no rule of the layout: 'blocks.0.attn.q_norm.weight'"):
        from_official({**sd, "blocks.0.attn.q_norm.weight": torch.ones(8)}, num_heads=4)
    with pytest.raises(LayoutError, match=r"has no place for 'extra'"):
        OFFICIAL_LAYOUT.to_theirs({"extra": torch.ones(1)})


def _official_checkpoint(path):
    """What the official DiT train.py saves: raw and EMA networks, the optimizer, its arguments as a Namespace."""
    raw, ema = _random(DiT(**TINY, norm="derf"), seed=0), _random(DiT(**TINY, norm="derf"), seed=1)
    torch.save({"model": to_official(raw), "ema": to_official(ema), "opt": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(model="DiT-XL/2", normtype="derf", global_seed=2026)}, path)  # fmt: skip
    return raw, ema


def test_official_training_checkpoints_are_read_weights_only(tmp_path, caplog):
    path = tmp_path / "0400000.pt"
    raw, ema = _official_checkpoint(path)
    with pytest.raises(Exception, match="Namespace"):  # a plain weights-only load refuses the pickled arguments
        torch.load(path, weights_only=True)
    with caplog.at_level(logging.INFO, logger="derf_zoo.models.dit.layouts"):
        ours = from_official(path, num_heads=4)
    assert "the 'ema' network" in caplog.text  # as the official sampler's find_model takes it
    _same(ours.state_dict(), ema.state_dict())
    _same(from_official(path, weights="model", num_heads=4).state_dict(), raw.state_dict())
    torch.save(to_official(raw), tmp_path / "plain.pt")  # Meta's released files are bare state dicts
    _same(from_official(str(tmp_path / "plain.pt"), num_heads=4).state_dict(), raw.state_dict())
    with pytest.raises(ValueError, match="weights= picks a network of a checkpoint file"):
        from_official(to_official(raw), weights="ema", num_heads=4)


# ---- diffusers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def diffusers():
    return pytest.importorskip("diffusers")


def _tiny_diffusers(diffusers, norm_eps=1e-6):
    torch.manual_seed(0)
    model = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=3,
                                            out_channels=6, num_layers=3, sample_size=8, patch_size=2,
                                            num_embeds_ada_norm=5, norm_num_groups=1, norm_eps=norm_eps)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        first = model.transformer_blocks[0].norm1.emb.state_dict()  # one embedder, copied per block (as converted)
        for block in model.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(first)
    return model.eval()


def _diffusers_out(model, x, t, y):
    with torch.no_grad():
        return model(x, timestep=t, class_labels=y).sample


@pytest.mark.parametrize("norm_eps", [1e-5, 1e-6])
def test_diffusers_round_trips_are_exact_and_diffusers_loads_the_export_strictly(diffusers, norm_eps):
    from derf_zoo.models.dit import DIFFUSERS_LAYOUT, from_diffusers, to_diffusers

    reference = _tiny_diffusers(diffusers, norm_eps)
    theirs = reference.state_dict()
    _same(DIFFUSERS_LAYOUT.to_theirs(DIFFUSERS_LAYOUT.to_ours(theirs)), theirs)  # embedders back in every block
    ours = from_diffusers(reference).eval()
    exported = to_diffusers(ours)  # built from our config and loaded with strict=True
    assert isinstance(exported, diffusers.DiTTransformer2DModel) and not exported.training
    assert exported.config.norm_eps == norm_eps and exported.config.num_layers == 3
    _same(exported.state_dict(), theirs)
    x, t, y = _inputs()
    torch.testing.assert_close(_diffusers_out(exported, x, t, y), _diffusers_out(reference, x, t, y), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), _diffusers_out(exported, x, t, y), rtol=0, atol=1e-5)
    _same(from_diffusers(exported).state_dict(), ours.state_dict())  # import -> export -> import


def test_the_registered_diffusers_layout_loads_what_from_diffusers_does(diffusers):
    from derf_zoo.models.dit import from_diffusers

    reference = _tiny_diffusers(diffusers)
    imported = from_diffusers(reference).eval()
    built = create_model("dit_s_2", **{**TINY, "num_heads": 2}, norm="layernorm", timestep_freq_shift=1.0).eval()
    load_layout(built, reference.state_dict(), get_family("dit").layout("diffusers"), source="test")
    _same(built.state_dict(), imported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(built(*_inputs()), imported(*_inputs()), rtol=0, atol=0)


def test_diffusers_bad_input_is_named(diffusers):
    from derf_zoo.models.dit import DIFFUSERS_LAYOUT, to_diffusers

    theirs = _tiny_diffusers(diffusers).state_dict()
    without_k = {k: v for k, v in theirs.items() if k != "transformer_blocks.1.attn1.to_k.bias"}
    with pytest.raises(LayoutError, match=r"'backbone.blocks.1.mixer.qkv.bias' fuses .* but misses "
                                          r"\['transformer_blocks.{i}.attn1.to_k.{p}'\]"):  # fmt: skip
        DIFFUSERS_LAYOUT.to_ours(without_k)
    with pytest.raises(LayoutError, match=r"match no rule of the layout: 'transformer_blocks.0.norm2.weight'"):
        DIFFUSERS_LAYOUT.to_ours({**theirs, "transformer_blocks.0.norm2.weight": torch.ones(32)})
    with pytest.raises(ValueError, match=r"to_diffusers: .* the 'attn' norm is derf; the 'mlp' norm is derf"):
        to_diffusers(DiT(**TINY, norm="derf"))
    with pytest.raises(ValueError, match=r"it has no null class"):
        to_diffusers(DiT(**TINY, class_dropout_prob=0.0, timestep_freq_shift=1.0))
    with pytest.warns(UserWarning, match="timestep_freq_shift is 0.0 and diffusers' is 1"):
        to_diffusers(DiT(**TINY))
