"""Released wav2vec 2.0 weights in transformers' or fairseq's layout load with ``create_model(..., pretrained=True)``
through the family's registered layouts (issue 19: the transformers layout failed there while from_transformers
worked), and give the model the importers give."""

import pytest
import torch
from safetensors.torch import save_file

import derf_zoo
from derf_zoo.hub import manifest as manifest_module
from derf_zoo.hub import sha256_file
from derf_zoo.models.wav2vec2 import from_fairseq, from_transformers, to_fairseq

transformers = pytest.importorskip("transformers", reason="the transformers layout's source needs transformers")


def _random(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    return model


def _hf_tiny():
    """transformers' Wav2Vec2ForPreTraining with the architecture of ``wav2vec2_tiny``, random weights."""
    config = transformers.Wav2Vec2Config(
        hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192, conv_dim=(64,) * 7,
        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4, num_codevectors_per_group=32,
        num_codevector_groups=2, codevector_dim=64, proj_codevector_dim=64, do_stable_layer_norm=True,
        feat_extract_norm="group", conv_bias=False, layerdrop=0.0)  # fmt: skip
    return _random(transformers.Wav2Vec2ForPreTraining(config)).eval()


def _release(tmp_path, hub_cache, seed, monkeypatch, state_dict, source_format):
    folder = tmp_path / source_format
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in state_dict.items()}, folder / "model.safetensors")
    seed(hub_cache, f"someone/wav2vec2-{source_format}", folder)
    entry = manifest_module.ReleasedWeights(
        name=f"wav2vec2_tiny.{source_format}", repo_id=f"someone/wav2vec2-{source_format}", dataset="d",
        produced_by="p", license="l", sha256=sha256_file(folder / "model.safetensors"), source_format=source_format)
    monkeypatch.setattr(manifest_module, "released_weights", lambda: (entry,))
    return derf_zoo.create_model(entry.name, pretrained=True)


def test_transformers_weights_load_with_pretrained_true(tmp_path, hub_cache, seed, monkeypatch):
    hf = _hf_tiny()
    loaded = _release(tmp_path, hub_cache, seed, monkeypatch, hf.state_dict(), "transformers")
    imported = from_transformers(hf)
    for key, value in imported.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x = torch.randn(1, 8000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, mask_time_indices=torch.zeros(1, 24, dtype=torch.bool)).last_hidden_state,
                                   hf.wav2vec2(x).last_hidden_state, atol=1e-5, rtol=1e-5)  # fmt: skip


def test_fairseq_weights_load_with_pretrained_true(tmp_path, hub_cache, seed, monkeypatch):
    reference = _random(derf_zoo.create_model("wav2vec2_tiny"))
    theirs = to_fairseq(reference)
    loaded = _release(tmp_path, hub_cache, seed, monkeypatch, theirs, "fairseq")
    imported = from_fairseq(theirs, **reference.model_args)
    for key, value in imported.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
