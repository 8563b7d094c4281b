"""wav2vec 2.0: masking and negatives semantics, temperature, gradient multiplier, norm sites, padding, layouts."""

import inspect

import pytest
import torch
from torch import nn

from derf_zoo.models import create_model, list_models
from derf_zoo.models.wav2vec2 import Wav2Vec2, from_fairseq, to_fairseq
from derf_zoo.models.wav2vec2.gumbel_quantizer import GumbelQuantizer
from derf_zoo.models.wav2vec2.span_masking import compute_mask_indices, sample_negative_indices
from derf_zoo.norms.layers import Derf, PointwiseNorm

TINY = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), embed_dim=32, depth=2, num_heads=4,
            ffn_dim=64, final_dim=12, num_codevectors=8, num_negatives=5, pos_conv_kernel=16, pos_conv_groups=4,
            mask_length=4, layer_drop=0.0)  # fmt: skip


def tiny(**kw) -> Wav2Vec2:
    torch.manual_seed(0)
    return Wav2Vec2(**{**TINY, **kw})


def test_mask_same_count_per_row_min_spans_and_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([200, 120, 57])
    m = compute_mask_indices((3, 200), 0.65, 10, lengths=lengths, min_masks=2, generator=g)
    counts = m.sum(1)
    assert (counts == counts[0]).all() and counts[0] > 0
    for row, n in zip(m, lengths.tolist()):
        assert not row[n:].any()  # padding is never masked
    # no rounding up: p=0 still gives min_masks spans of mask_length (overlaps allowed) per row
    free = compute_mask_indices((50, 100), 0.0, 10, min_masks=2, require_same_masks=False, generator=g)
    assert ((free.sum(1) >= 10) & (free.sum(1) <= 20)).all()
    # fairseq's expected masked fraction with p=0.65, span 10: ~half the frames
    big = compute_mask_indices((8, 500), 0.65, 10, min_masks=2, require_same_masks=False, generator=g)
    assert 0.4 < big.float().mean() < 0.6
    # reproducible with a generator
    a = compute_mask_indices((2, 80), 0.65, 10, generator=torch.Generator().manual_seed(5))
    b = compute_mask_indices((2, 80), 0.65, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mask_prob"):
        compute_mask_indices((2, 80), 1.5, 10)


def test_negatives_never_the_positive_and_from_the_same_row():
    g = torch.Generator().manual_seed(1)
    m = compute_mask_indices((3, 100), 0.65, 10, generator=g)
    neg = sample_negative_indices(m, 100, generator=g)
    assert neg.shape == (3, 100, 100)
    flat_mask = m.flatten()
    for b in range(3):
        for t in m[b].nonzero().squeeze(1).tolist():
            idx = neg[b, t]
            assert (idx // 100 == b).all()  # same utterance
            assert (idx != b * 100 + t).all()  # never the positive
            assert flat_mask[idx].all()  # only masked frames
    with pytest.raises(ValueError, match="at least 2"):
        sample_negative_indices(torch.tensor([[True, False, False]]), 3)


def test_temperature_schedule_is_state():
    model = tiny(latent_temp=(2.0, 0.5, 0.999995))
    assert float(model.quantizer.temperature) == 2.0
    model.set_num_updates(100_000)
    assert float(model.quantizer.temperature) == pytest.approx(2 * 0.999995**100_000)
    model.set_num_updates(10_000_000)
    assert float(model.quantizer.temperature) == 0.5
    assert float(model.state_dict()["quantizer.temperature"]) == 0.5
    fresh = tiny()
    fresh.load_state_dict(model.state_dict())
    assert float(fresh.quantizer.temperature) == 0.5


def _grads(mult: float) -> dict[str, torch.Tensor]:
    model = tiny(feature_grad_mult=mult).eval()
    x = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    out = model(x, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_multiplier_scales_only_the_cnn():
    slow, plain = _grads(0.1), _grads(1.0)
    cnn = [n for n in plain if n.startswith("feature_extractor.")]
    assert cnn
    for n in plain:
        want = plain[n] * 0.1 if n.startswith("feature_extractor.") else plain[n]
        torch.testing.assert_close(slow[n], want, atol=1e-6, rtol=1e-4)


def test_norm_sites_swap_to_derf_but_cnn_norms_stay():
    model = tiny(norm="derf", extractor_mode="layer")
    sites = {getattr(m, "norm_site", None) for m in model.modules() if isinstance(m, PointwiseNorm)}
    assert sites == {"attn", "mlp", "encoder"}
    assert isinstance(model.encoder_norm, Derf) and all(isinstance(b.norm1, Derf) for b in model.backbone.blocks)
    assert isinstance(model.layer_norm, nn.LayerNorm)
    assert all(isinstance(layer.norm, nn.LayerNorm) for layer in model.feature_extractor.conv_layers)
    group = tiny(norm={"attn": "derf", "default": "layernorm"})
    assert isinstance(group.feature_extractor.conv_layers[0].norm, nn.GroupNorm)
    assert group.feature_extractor.conv_layers[1].norm is None
    assert isinstance(group.backbone.blocks[0].norm1, Derf) and not isinstance(group.encoder_norm, Derf)
    with pytest.raises(ValueError, match="norm site"):
        tiny(norm={"final": "derf", "default": "layernorm"})


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_gives_the_unpadded_outputs(norm_first):
    # Layer-norm CNN: a frame sees only its own samples (the group-norm CNN normalises over the whole row, so
    # fairseq and transformers too give padded rows other features there).
    model = tiny(extractor_mode="layer", norm_first=norm_first, norm="derf").eval()
    g = torch.Generator().manual_seed(0)
    short = torch.randn(1, 2500, generator=g)
    batch = torch.cat([torch.randn(1, 4000, generator=g), torch.nn.functional.pad(short, (0, 1500))])
    att = torch.ones(2, 4000, dtype=torch.long)
    att[1, 2500:] = 0
    with torch.no_grad():
        padded = model(batch, attention_mask=att, generator=torch.Generator().manual_seed(1))
        alone = model(short, mask_time_indices=torch.zeros(1, 124, dtype=torch.bool))
        frames = alone.last_hidden_state.shape[1]
        assert padded.padding_mask[1, :frames].logical_not().all() and padded.padding_mask[1, frames:].all()
        assert not padded.mask_time_indices[1, frames:].any()  # padding never masked
        unmasked = model(batch, attention_mask=att, mask_time_indices=torch.zeros(2, 199, dtype=torch.bool))
    torch.testing.assert_close(unmasked.last_hidden_state[1, :frames], alone.last_hidden_state[0], atol=1e-5,
                               rtol=1e-5)  # fmt: skip
    assert torch.isfinite(padded.loss)


def test_sampled_masks_and_negatives_are_reproducible_and_loss_parts():
    model = tiny().eval()
    x = torch.randn(2, 3000)
    a = model(x, generator=torch.Generator().manual_seed(3))
    b = model(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.mask_time_indices, b.mask_time_indices)
    assert torch.equal(a.sampled_negative_indices, b.sampled_negative_indices)
    assert a.loss == b.loss
    n = a.mask_time_indices.sum()
    assert a.sample_size == n and a.logits.shape == (n, 1 + 5)
    total = a.contrastive_loss + 0.1 * a.diversity_loss + 10 * a.feature_penalty
    torch.testing.assert_close(a.loss, total)
    # a negative equal to the positive gets -inf: feed negatives that are all the positive's own frame
    neg = torch.arange(2 * 149).view(2, 149, 1).expand(2, 149, 5).contiguous()
    c = model(x, mask_time_indices=a.mask_time_indices, sampled_negative_indices=neg)
    assert torch.isinf(c.logits[:, 1:]).all() and c.contrastive_loss.abs() < 1e-6


def test_fairseq_layout_round_trip():
    model = tiny(extractor_mode="layer").eval()
    sd = to_fairseq(model)
    assert "quantizer.vars" in sd and "encoder.pos_conv.0.weight_g" in sd
    assert "encoder.layers.0.self_attn.k_proj.weight" in sd and "feature_extractor.conv_layers.0.2.1.weight" in sd
    back = from_fairseq(sd, **TINY, extractor_mode="layer")
    x = torch.randn(1, 3000)
    m = torch.zeros(1, 149, dtype=torch.bool)
    m[0, 10:30] = True
    torch.testing.assert_close(back(x, mask_time_indices=m, generator=torch.Generator().manual_seed(0)).loss,
                               model(x, mask_time_indices=m, generator=torch.Generator().manual_seed(0)).loss)
    assert "feature_extractor.conv_layers.0.2.weight" in to_fairseq(tiny())  # group mode: GroupNorm at .2


def test_entry_points_and_sizes():
    names = list_models("wav2vec2_*")
    for n in ("wav2vec2_base", "wav2vec2_large", "wav2vec2_base_derf", "wav2vec2_base_dyt", "wav2vec2_base_ln",
              "wav2vec2_large_derf", "wav2vec2_large_dyt", "wav2vec2_large_ln", "wav2vec2_tiny", "wav2vec2_tiny_derf",
              "wav2vec2_tiny_ln"):  # fmt: skip
        assert n in names
    base = create_model("wav2vec2_base")
    count = sum(p.numel() for p in base.parameters())
    assert count == 95_044_608  # transformers Wav2Vec2ForPreTraining(Wav2Vec2Config()): the Base config
    small = dict(embed_dim=32, depth=1, num_heads=4, ffn_dim=64, conv_dim=(16,) * 7, final_dim=12)
    paper = create_model("wav2vec2_base_derf", **small)
    large = create_model("wav2vec2_large_ln", **small)
    lv60 = create_model("wav2vec2_large", **small)
    assert not base.norm_first and paper.norm_first and isinstance(paper.encoder_norm, Derf)
    assert paper.encoder_norm.alpha_init == 0.5 and paper.feature_extractor.conv_layers[0].conv.bias is None
    # The paper's Large keeps fairseq's default CNN (its yaml sets no extractor_mode); the generic one is LV-60.
    assert large.norm_first and large.feature_extractor.conv_layers[0].conv.bias is None
    assert lv60.feature_extractor.conv_layers[0].conv.bias is not None
    assert large.quantizer.max_temp == 2.0 and large.quantizer.min_temp == 0.1
    tiny_model = create_model("wav2vec2_tiny_derf")
    assert sum(p.numel() for p in tiny_model.parameters()) < 500_000
    out = tiny_model(torch.randn(2, 16000), generator=torch.Generator().manual_seed(0))
    assert out.last_hidden_state.shape == (2, 49, 96) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="receptive field"):
        tiny_model(torch.randn(1, 300))


def test_save_pretrained_round_trip_keeps_the_temperature(tmp_path):
    from derf_zoo.models import from_pretrained

    model = create_model("wav2vec2_tiny_derf").eval()
    model.set_num_updates(50_000)
    model.save_pretrained(tmp_path / "w2v")
    back = from_pretrained(str(tmp_path / "w2v")).eval()
    assert float(back.quantizer.temperature) == pytest.approx(2 * 0.999995**50_000)
    x = torch.randn(1, 8000)
    m = torch.zeros(1, 24, dtype=torch.bool)
    m[0, 5:15] = True
    g = torch.Generator
    torch.testing.assert_close(back(x, mask_time_indices=m, generator=g().manual_seed(0)).loss,
                               model(x, mask_time_indices=m, generator=g().manual_seed(0)).loss)  # fmt: skip


def test_a_too_short_row_is_named_instead_of_unmasking_the_batch():
    # fairseq cuts every row to the fewest masked frames: one 1-frame row would leave the whole batch unmasked.
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"Row 1 \(1 frame\(s\)\).*at least 2"):
        compute_mask_indices((2, 50), 0.65, 10, lengths=torch.tensor([50, 1]), min_masks=2, min_masked=2, generator=g)
    # a normal batch gets the very same mask (fairseq's draws) with or without the check
    kw = dict(lengths=torch.tensor([200, 120, 57]), min_masks=2)
    checked, plain = (compute_mask_indices((3, 200), 0.65, 10, **kw, min_masked=k,
                                           generator=torch.Generator().manual_seed(3)) for k in (2, 0))  # fmt: skip
    assert torch.equal(checked, plain)
    # without min_masked the old semantics hold (an all-False mask, no error)
    m = compute_mask_indices((2, 50), 0.65, 10, lengths=torch.tensor([50, 1]), min_masks=2, generator=g)
    assert m.sum(1).max() <= 1
    # the negatives' error names the short row, not row 0
    with pytest.raises(ValueError, match=r"Row\(s\) \[1\]"):
        sample_negative_indices(torch.tensor([[True, True, False], [False, True, False]]), 3)
    # the pretraining model names the row in samples too, and how many samples a row needs
    model = tiny()
    x = torch.randn(2, 800)
    att = torch.ones(2, 800, dtype=torch.long)
    att[1, 45:] = 0
    with pytest.raises(ValueError, match=r"Row 1 \(1 frame\(s\), 45 samples\).*samples"):
        model(x, attention_mask=att, generator=g)


def test_bad_audio_and_masks_are_named():
    model = tiny(pretraining=False).eval()
    x = torch.randn(2, 1600)
    with pytest.raises(ValueError, match=r"must have the shape of input_values \(2, 1600\).*got \(2, 800\)"):
        model(x, attention_mask=torch.ones(2, 800, dtype=torch.long))  # it silently padded the second half away
    zero = torch.ones(2, 1600, dtype=torch.long)
    zero[1] = 0
    with pytest.raises(ValueError, match=r"attention_mask is all zero in row\(s\) \[1\]"):
        model(x, attention_mask=zero)
    holes = torch.ones(2, 1600, dtype=torch.long)
    holes[0, 100:200] = 0
    with pytest.raises(ValueError, match="attention_mask must be right padding"):
        model(x, attention_mask=holes)
    with pytest.raises(ValueError, match=r"float waveform in \[-1, 1\], got torch.int16.*32768"):
        model((x * 1000).to(torch.int16))


def test_feature_projection_can_be_kept_when_the_widths_match():
    fairseq, hf = tiny(conv_dim=(32,) * 3), tiny(conv_dim=(32,) * 3, feature_projection=True)
    assert isinstance(fairseq.post_extract_proj, nn.Identity) and isinstance(hf.post_extract_proj, nn.Linear)
    with pytest.raises(ValueError, match=r"feature_projection=False needs the last conv width \(16\) to equal"):
        tiny(feature_projection=False)


@pytest.mark.parametrize("method", [GumbelQuantizer.temperature_at, Wav2Vec2.set_grad_checkpointing,
                                    Wav2Vec2.no_weight_decay], ids=lambda f: f.__qualname__)  # fmt: skip
def test_public_methods_have_google_style_docstrings(method):
    doc = inspect.getdoc(method) or ""
    sig = inspect.signature(method)
    assert doc.split("\n")[0].strip()
    assert ("Args:" in doc) == (len(sig.parameters) > 1)  # more than self
    assert ("Returns:" in doc) == (sig.return_annotation not in (None, "None"))
