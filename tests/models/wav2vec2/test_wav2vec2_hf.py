"""wav2vec 2.0 against transformers' Wav2Vec2ForPreTraining / Wav2Vec2Model: tiny random configs, no download."""

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

from derf_zoo.models.wav2vec2 import TRANSFORMERS_LAYOUT, Wav2Vec2, from_transformers
from derf_zoo.models.wav2vec2.span_masking import compute_mask_indices, sample_negative_indices


def tiny_config(stable: bool, mode: str, **kw) -> Wav2Vec2Config:
    args = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, num_codevectors_per_group=8, num_codevector_groups=2,
                codevector_dim=16, proj_codevector_dim=12, do_stable_layer_norm=stable, feat_extract_norm=mode,
                conv_bias=mode == "layer", mask_time_prob=0.5, num_negatives=5, layerdrop=0.0)  # fmt: skip
    return Wav2Vec2Config(**{**args, **kw})


def masks(model: Wav2Vec2, batch: int, samples: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = int(model.output_lengths(torch.tensor(samples)))
    m = compute_mask_indices((batch, frames), 0.5, 4, min_masks=2, generator=g)
    return m, sample_negative_indices(m, 5, generator=g)


@pytest.mark.parametrize(("stable", "mode"), [(False, "group"), (True, "layer"), (False, "layer"), (True, "group")])
def test_pretraining_parity_eval(stable, mode):
    torch.manual_seed(0)
    hf = Wav2Vec2ForPreTraining(tiny_config(stable, mode)).eval()
    ours = from_transformers(hf)
    assert ours.norm_first is stable and not ours.training
    x = torch.randn(2, 4000)
    m, n = masks(ours, 2, 4000)
    with torch.no_grad():
        a = hf(x, mask_time_indices=m, sampled_negative_indices=n)
        b = ours(x, mask_time_indices=m, sampled_negative_indices=n)
        hidden = hf.wav2vec2(x, mask_time_indices=m).last_hidden_state
    torch.testing.assert_close(b.last_hidden_state, hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.contrastive_loss, a.contrastive_loss, atol=1e-4, rtol=1e-5)
    # HF's eval diversity loss uses the hard (argmax) perplexity: ours reports it as code_perplexity.
    gv = 16
    torch.testing.assert_close((gv - b.code_perplexity) / gv * b.sample_size, a.diversity_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.code_perplexity, a.codevector_perplexity)
    # HF has no feature penalty: the import sets its weight to 0, so the totals agree with the hard perplexity.
    assert ours.feature_penalty_weight == 0.0
    torch.testing.assert_close(b.loss - 0.1 * b.diversity_loss + 0.1 * a.diversity_loss, a.loss, atol=1e-4,
                               rtol=1e-5)  # fmt: skip


def test_training_mode_losses_and_gradients_match_hf():
    """Training mode without dropout: the soft perplexity (fairseq's prob_perplexity) is what both use, and with the
    same seed the Gumbel noise is the same draw, so losses and gradients agree too."""
    torch.manual_seed(1)
    cfg = tiny_config(False, "group", hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                      feat_proj_dropout=0.0, feat_quantizer_dropout=0.0)  # fmt: skip
    hf = Wav2Vec2ForPreTraining(cfg)
    ours = from_transformers(hf).train()
    hf.train()
    x = torch.randn(2, 4000)
    m, n = masks(ours, 2, 4000, seed=3)
    torch.manual_seed(7)
    a = hf(x, mask_time_indices=m, sampled_negative_indices=n)
    torch.manual_seed(7)
    b = ours(x, mask_time_indices=m, sampled_negative_indices=n)
    torch.testing.assert_close(b.codevector_perplexity, a.codevector_perplexity, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b.diversity_loss, a.diversity_loss, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b.contrastive_loss, a.contrastive_loss, atol=1e-4, rtol=1e-5)
    a.loss.backward()
    b.loss.backward()
    enc, cnn = hf.wav2vec2.encoder, hf.wav2vec2.feature_extractor
    pairs = [(hf.quantizer.weight_proj.weight, ours.quantizer.weight_proj.weight),
             (enc.layers[0].feed_forward.intermediate_dense.weight, ours.backbone.blocks[0].mlp.fc1.weight),
             (cnn.conv_layers[0].conv.weight, ours.feature_extractor.conv_layers[0].conv.weight)]  # fmt: skip
    for theirs, mine in pairs:
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("stable", [False, True])
def test_encoder_only_parity_with_padding(stable):
    torch.manual_seed(2)
    hf = Wav2Vec2Model(tiny_config(stable, "layer")).eval()
    ours = from_transformers(hf)
    assert not ours.pretraining and not hasattr(ours, "quantizer")
    x = torch.randn(2, 4000)
    att = torch.ones(2, 4000, dtype=torch.long)
    att[1, 2500:] = 0
    x[1, 2500:] = 0
    with torch.no_grad():
        a = hf(x, attention_mask=att).last_hidden_state
        b = ours(x, attention_mask=att).last_hidden_state
    valid = ~ours(x, attention_mask=att).padding_mask
    torch.testing.assert_close(b[valid], a[valid], atol=1e-5, rtol=1e-5)


def test_old_weight_norm_names_and_state_dict_import():
    torch.manual_seed(3)
    cfg = tiny_config(False, "group")
    hf = Wav2Vec2ForPreTraining(cfg).eval()
    sd = hf.state_dict()
    old = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                               "weight_v"): v for k, v in sd.items()}
    assert any(k.endswith("weight_g") for k in old)
    ours = from_transformers(old, config=cfg)
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mask_time_indices=torch.zeros(1, 149, dtype=torch.bool)).last_hidden_state,
                                   hf.wav2vec2(x).last_hidden_state, atol=1e-5, rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="config="):
        from_transformers(sd)
    one = {"wav2vec2.encoder.layers.3.attention.out_proj.bias": torch.zeros(2)}
    assert list(TRANSFORMERS_LAYOUT.to_ours(one)) == ["backbone.blocks.3.mixer.proj.bias"]


def test_last_conv_width_equal_to_hidden_size_imports():
    # transformers always has feature_projection.projection; fairseq (and our default) drops it when the widths match
    torch.manual_seed(4)
    hf = Wav2Vec2Model(tiny_config(True, "layer", conv_dim=(32, 32, 32))).eval()
    ours = from_transformers(hf)
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).last_hidden_state, hf(x).last_hidden_state, atol=1e-5, rtol=1e-5)
