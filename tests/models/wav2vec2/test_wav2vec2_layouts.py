"""wav2vec 2.0's weight layouts (transformers' Wav2Vec2ForPreTraining, fairseq's Wav2Vec2Model): exact round trips,
the registered layouts equal to the importers, the exporters' output accepted by HF strictly and equal to fairseq's
key list, and bad input named."""

import argparse

import pytest
import torch
from safetensors.torch import save_file
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

from derf_zoo.models import create_model, get_family
from derf_zoo.models.wav2vec2 import (
    FAIRSEQ_LAYOUT,
    TRANSFORMERS_LAYOUT,
    Wav2Vec2,
    fairseq_layout,
    from_fairseq,
    from_transformers,
    to_fairseq,
    to_transformers,
    transformers_layout,
)
from derf_zoo.models.wav2vec2.span_masking import compute_mask_indices, sample_negative_indices
from derf_zoo.weights import LayoutError, load_layout
from tests.models.wav2vec2._fairseq_wav2vec2_reference import fairseq_wav2vec2_shapes

TINY = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), embed_dim=32, depth=2, num_heads=4,
            ffn_dim=64, final_dim=12, num_codevectors=8, codevector_dim=16, num_negatives=5, pos_conv_kernel=16,
            pos_conv_groups=4, mask_length=4, layer_drop=0.0)  # fmt: skip


def hf_config(stable: bool = False, mode: str = "group", **kw) -> Wav2Vec2Config:
    args = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, num_codevectors_per_group=8, num_codevector_groups=2,
                codevector_dim=16, proj_codevector_dim=12, do_stable_layer_norm=stable, feat_extract_norm=mode,
                conv_bias=mode == "layer", mask_time_prob=0.5, num_negatives=5, layerdrop=0.0)  # fmt: skip
    return Wav2Vec2Config(**{**args, **kw})


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random: a norm left at ones/zeros or a zero bias would let a swapped key pass."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    return model


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and torch.equal(a[key], b[key]), key


def fixed_masks(model: Wav2Vec2, batch: int, samples: int):
    g = torch.Generator().manual_seed(0)
    frames = int(model.output_lengths(torch.tensor(samples)))
    m = compute_mask_indices((batch, frames), 0.5, 4, min_masks=2, generator=g)
    return m, sample_negative_indices(m, 5, generator=g)


# ---- round trips -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stable", "mode"), [(False, "group"), (True, "layer")])
def test_a_transformers_state_dict_comes_back_exactly(stable, mode):
    hf = randomised(Wav2Vec2ForPreTraining(hf_config(stable, mode)))
    theirs = hf.state_dict()
    ours = TRANSFORMERS_LAYOUT.to_ours(theirs)
    assert ours["quantizer.codevectors"].shape == (2, 8, 8)  # (G, V, d/G); HF's is (1, G*V, d/G)
    assert_same_state(TRANSFORMERS_LAYOUT.to_theirs(ours), theirs)


@pytest.mark.parametrize("mode", ["group", "layer"])
def test_our_state_dict_comes_back_exactly_through_both_layouts(mode):
    for model in (randomised(Wav2Vec2(**TINY, extractor_mode=mode, feature_projection=True)),
                  randomised(Wav2Vec2(**TINY, extractor_mode=mode, norm="derf", num_codevector_groups=4))):
        sd = model.state_dict()
        groups = model.quantizer.num_groups
        for layout in (transformers_layout(groups), fairseq_layout(groups, mode)):
            back = layout.to_ours(layout.to_theirs(sd))
            back["quantizer.temperature"] = sd["quantizer.temperature"]  # kept by the model, in neither upstream
            assert_same_state(back, sd)


def test_import_export_import_is_the_identity_for_transformers():
    hf = randomised(Wav2Vec2ForPreTraining(hf_config(True, "layer")))
    ours = from_transformers(hf)
    again = from_transformers(to_transformers(ours))
    assert_same_state(again.state_dict(), ours.state_dict())
    assert_same_state(to_transformers(ours).state_dict(), hf.state_dict())


@pytest.mark.parametrize("mode", ["group", "layer"])
def test_import_export_import_is_the_identity_for_fairseq(mode):
    model = randomised(Wav2Vec2(**TINY, extractor_mode=mode)).eval()
    theirs = to_fairseq(model)
    back = from_fairseq(theirs, **TINY, extractor_mode=mode)
    assert_same_state(back.state_dict(), model.state_dict())
    assert_same_state(to_fairseq(back), theirs)


# ---- the registered layouts are the importers ------------------------------------------------------------------


def tiny_entry_point_hf_config() -> Wav2Vec2Config:
    """transformers' config of ``wav2vec2_tiny`` (the registered entry point's architecture)."""
    return Wav2Vec2Config(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192,
                          conv_dim=(64,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
                          num_codevectors_per_group=32, num_codevector_groups=2, codevector_dim=64,
                          proj_codevector_dim=64, do_stable_layer_norm=True, feat_extract_norm="group",
                          conv_bias=False, layerdrop=0.0)  # fmt: skip


def test_a_transformers_state_dict_through_the_registered_layout_is_from_transformers():
    """The bug of issue 19: the HF state dict through the family's registered map failed (missing mixer.qkv,
    unexpected q/k/v_proj) where from_transformers worked. Both now give the same model."""
    hf = randomised(Wav2Vec2ForPreTraining(tiny_entry_point_hf_config())).eval()
    imported = from_transformers(hf)
    layout = get_family("wav2vec2").layout("transformers")
    assert layout is TRANSFORMERS_LAYOUT
    registered = load_layout(create_model("wav2vec2_tiny"), hf.state_dict(), layout, source="HF").eval()
    assert_same_state(registered.state_dict(), imported.state_dict())
    x = torch.randn(1, 8000)
    m, n = fixed_masks(imported, 1, 8000)
    with torch.no_grad():
        a = registered(x, mask_time_indices=m, sampled_negative_indices=n)
        b = imported(x, mask_time_indices=m, sampled_negative_indices=n)
        c = hf.wav2vec2(x, mask_time_indices=m).last_hidden_state
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(a.last_hidden_state, c, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.contrastive_loss, b.contrastive_loss, rtol=0, atol=0)


def test_a_fairseq_state_dict_through_the_registered_layout_is_from_fairseq():
    theirs = to_fairseq(randomised(create_model("wav2vec2_tiny")))
    imported = from_fairseq(theirs, **create_model("wav2vec2_tiny").model_args)
    layout = get_family("wav2vec2").layout("fairseq")
    assert layout is FAIRSEQ_LAYOUT
    registered = load_layout(create_model("wav2vec2_tiny"), theirs, layout, source="fairseq")
    assert_same_state(registered.state_dict(), imported.state_dict())


def test_a_bare_wav2vec2model_and_old_weight_norm_names_import_through_the_same_layout():
    hf = randomised(Wav2Vec2Model(hf_config(False, "group"))).eval()
    sd = hf.state_dict()
    old = dict(sd)
    conv = "encoder.pos_conv_embed.conv."
    old[conv + "weight_g"] = old.pop(conv + "parametrizations.weight.original0")
    old[conv + "weight_v"] = old.pop(conv + "parametrizations.weight.original1")
    a, b = TRANSFORMERS_LAYOUT.to_ours(sd), TRANSFORMERS_LAYOUT.to_ours(old)
    assert_same_state(a, b)
    assert "pos_conv.conv.parametrizations.weight.original0" in a and "backbone.blocks.1.mixer.qkv.weight" in a
    # exports write transformers' current names, under the task models' wav2vec2. prefix
    assert "wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1" in TRANSFORMERS_LAYOUT.to_theirs(a)


def test_task_heads_of_hf_models_are_dropped_on_import():
    sd = randomised(Wav2Vec2Model(hf_config())).state_dict()
    heads = {"lm_head.weight": torch.zeros(5, 32), "lm_head.bias": torch.zeros(5)}  # Wav2Vec2ForCTC
    assert_same_state(TRANSFORMERS_LAYOUT.to_ours({**sd, **heads}), TRANSFORMERS_LAYOUT.to_ours(sd))


# ---- exporters: what the upstream loads ----------------------------------------------------------------------


@pytest.mark.parametrize(("norm_first", "mode"), [(False, "group"), (True, "layer")])
def test_to_transformers_loads_strictly_and_gives_our_outputs(norm_first, mode):
    ours = randomised(Wav2Vec2(**TINY, extractor_mode=mode, norm_first=norm_first, feature_projection=True,
                               feature_penalty_weight=0.0, mask_prob=0.5)).eval()  # fmt: skip
    ours.set_num_updates(1000)
    hf = to_transformers(ours)  # load_state_dict(strict=True) inside
    assert isinstance(hf, Wav2Vec2ForPreTraining) and not hf.training
    assert hf.quantizer.temperature == pytest.approx(float(ours.quantizer.temperature))
    # HF's own loader, strictly, on a model built from the config alone
    fresh = Wav2Vec2ForPreTraining(hf.config)
    fresh.load_state_dict(hf.state_dict(), strict=True)
    x = torch.randn(2, 4000)
    m, n = fixed_masks(ours, 2, 4000)
    with torch.no_grad():
        a = hf(x, mask_time_indices=m, sampled_negative_indices=n)
        b = ours(x, mask_time_indices=m, sampled_negative_indices=n)
        hidden = hf.wav2vec2(x, mask_time_indices=m).last_hidden_state
    torch.testing.assert_close(b.last_hidden_state, hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.contrastive_loss, a.contrastive_loss, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b.code_perplexity, a.codevector_perplexity)


def test_to_transformers_of_an_encoder_without_masking_is_a_wav2vec2model():
    ours = randomised(Wav2Vec2(**TINY, pretraining=False, feature_projection=True, mask_prob=0.0)).eval()
    hf = to_transformers(ours)
    assert type(hf) is Wav2Vec2Model and "masked_spec_embed" not in hf.state_dict()  # HF keeps none at p = 0
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).last_hidden_state, hf(x).last_hidden_state, atol=1e-5, rtol=1e-5)
    back = from_transformers(hf)  # the mask embedding is the model's own then
    assert_same_state({k: v for k, v in back.state_dict().items() if k != "mask_emb"},
                      {k: v for k, v in ours.state_dict().items() if k != "mask_emb"})  # fmt: skip


def test_to_transformers_refuses_what_hf_cannot_hold():
    with pytest.raises(ValueError, match=r"LayerNorm in every site.*'attn' site is derf"):
        to_transformers(Wav2Vec2(**TINY, norm={"default": "layernorm", "attn": "derf"}, feature_projection=True))
    with pytest.raises(ValueError, match="no feature projection"):
        to_transformers(Wav2Vec2(**{**TINY, "conv_dim": (32, 32, 32)}))  # widths match: fairseq drops it


@pytest.mark.parametrize(("mode", "fairseq_mode"), [("group", "default"), ("layer", "layer_norm")])
def test_to_fairseq_writes_fairseq_keys_and_shapes(mode, fairseq_mode):
    model = Wav2Vec2(**TINY, extractor_mode=mode, conv_bias=mode == "layer")
    written = {k: tuple(v.shape) for k, v in to_fairseq(model).items()}
    expected = fairseq_wav2vec2_shapes(
        conv_layers=[(16, 10, 5), (16, 3, 2), (16, 3, 2)], extractor_mode=fairseq_mode, conv_bias=mode == "layer",
        embed_dim=32, layers=2, ffn_dim=64, conv_pos=16, conv_pos_groups=4, latent_vars=8, latent_groups=2,
        final_dim=12, latent_dim=16)  # fmt: skip
    assert written == expected


# ---- bad input ------------------------------------------------------------------------------------------------


def test_bad_input_is_named():
    sd = Wav2Vec2ForPreTraining(hf_config()).state_dict()
    with pytest.raises(LayoutError, match=r"match no rule.*'wav2vec2\.adapter\.proj\.weight'"):
        TRANSFORMERS_LAYOUT.to_ours({**sd, "wav2vec2.adapter.proj.weight": torch.zeros(2, 2)})
    both = {**sd, "wav2vec2.encoder.pos_conv_embed.conv.weight_g": torch.zeros(1, 1, 16)}  # old and new names at once
    with pytest.raises(LayoutError, match=r"both map onto 'pos_conv\.conv\.parametrizations\.weight\.original0'"):
        TRANSFORMERS_LAYOUT.to_ours(both)
    partial = {k: v for k, v in sd.items() if k != "wav2vec2.encoder.layers.1.attention.k_proj.bias"}
    with pytest.raises(LayoutError, match=r"backbone\.blocks\.1\.mixer\.qkv\.bias.*misses.*k_proj"):
        TRANSFORMERS_LAYOUT.to_ours(partial)
    with pytest.raises(LayoutError, match=r"no place for 'backbone\.blocks\.0\.mixer\.bogus'"):
        FAIRSEQ_LAYOUT.to_theirs({"backbone.blocks.0.mixer.bogus": torch.zeros(1)})
    with pytest.raises(ValueError, match="extractor_mode must be 'group' or 'layer', got 'default'"):
        fairseq_layout(2, "default")
    with pytest.raises(ValueError, match="codevector_groups must be an integer >= 1, got 0"):
        transformers_layout(0)
    # a codebook of 2 groups through the layout of another G does not load silently
    with pytest.raises(ValueError, match=r"quantizer\.codevectors: weights \(4, 4, 8\) vs model \(2, 8, 8\)"):
        load_layout(Wav2Vec2(**TINY), to_fairseq(Wav2Vec2(**TINY)), fairseq_layout(4), source="fairseq")


def test_files_load_what_their_state_dicts_load(tmp_path):
    hf = randomised(Wav2Vec2ForPreTraining(hf_config()))
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "model.safetensors")
    assert_same_state(from_transformers(tmp_path / "model.safetensors", hf.config).state_dict(),
                      from_transformers(hf.state_dict(), hf.config).state_dict())
    theirs = to_fairseq(randomised(Wav2Vec2(**TINY)))
    # an old fairseq checkpoint: the network under "model", its arguments an argparse.Namespace
    torch.save({"model": theirs, "args": argparse.Namespace(arch="wav2vec2")}, tmp_path / "checkpoint.pt")
    assert_same_state(from_fairseq(str(tmp_path / "checkpoint.pt"), **TINY).state_dict(),
                      from_fairseq(theirs, **TINY).state_dict())
