"""GPT-2: parameter count and parity with HF's GPT2LMHeadModel, nanoGPT's layout (with the Derf patch's keys), the
per-site alpha and embedding scale, the KV cache and generate(), and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from derf_zoo.layers.attention import Attention, KVCache
from derf_zoo.models import create_model, from_nanogpt, from_transformers, to_nanogpt, to_transformers
from derf_zoo.models.gpt2 import GPT2, HF_LAYOUT, NANOGPT_LAYOUT
from derf_zoo.norms.layers import Derf, DyT, LayerNorm
from tests.models.gpt2._nanogpt_reference import GPT, GPTConfig

transformers = pytest.importorskip("transformers", reason="HF parity needs transformers")

TINY = {"vocab_size": 50, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4}


def _hf_tiny():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random norms and biases too, so every mapped tensor matters
        for name, p in hf.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return hf


def _randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "alpha" in name or "shift" in name or "ln_" in name or name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.slow
def test_parameter_count_of_gpt2_ln_equals_hf_gpt2():
    model = create_model("gpt2_ln")
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # GPT2LMHeadModel's, the head tied
    # the larger sizes are HF's configurations (openai-community/gpt2-{medium,large,xl})
    from derf_zoo.models.gpt2 import GPT2_SIZES as _SIZES

    assert [(_SIZES[s]["n_embd"], _SIZES[s]["n_layer"], _SIZES[s]["n_head"]) for s in ("medium", "large", "xl")] == \
        [(1024, 24, 16), (1280, 36, 20), (1600, 48, 25)]


def test_from_transformers_gives_identical_logits_and_loss():
    hf = _hf_tiny()
    ours = from_transformers(hf).eval()
    ids = torch.randint(0, 50, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids, labels=ids)
        logits = ours(ids)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=1e-5)
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, ref.loss, atol=1e-6, rtol=1e-6)


def test_to_transformers_round_trip_loads_strictly_and_matches():
    torch.manual_seed(0)
    ours = _randomise(GPT2(**TINY)).eval()
    hf = to_transformers(ours)  # load_state_dict(strict=True) inside
    sd = hf.state_dict()
    assert torch.equal(sd["transformer.h.0.attn.c_attn.weight"], ours.backbone.blocks[0].mixer.qkv.weight.t())
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()  # tied in HF too
    ids = torch.randint(0, 50, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=1e-5)
    back = from_transformers(hf)
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_the_layout_tables_are_their_own_reverse():
    torch.manual_seed(0)
    for layout, model in ((HF_LAYOUT, GPT2(**TINY)), (NANOGPT_LAYOUT, GPT2(**TINY, norm="derf"))):
        sd = model.state_dict()
        back = layout.to_ours(layout.to_theirs(sd))
        assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_an_hf_state_dict_round_trips_through_the_layout_exactly():
    sd = _hf_tiny().state_dict()
    back = HF_LAYOUT.to_theirs(HF_LAYOUT.to_ours(sd))
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_the_registered_layout_gives_the_model_from_transformers_gives():
    from derf_zoo.models import get_family
    from derf_zoo.weights import load_layout

    hf = _hf_tiny()
    imported = from_transformers(hf)
    registered = load_layout(GPT2(**TINY), hf.state_dict(), get_family("gpt2").layout("transformers"), source="t")
    assert all(torch.equal(registered.state_dict()[k], v) for k, v in imported.state_dict().items())


def test_a_head_that_is_not_tied_is_refused():
    sd = dict(_hf_tiny().state_dict())
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    with pytest.raises(ValueError, match="tied"):
        HF_LAYOUT.to_ours(sd)


def test_to_transformers_refuses_a_derf_model():
    with pytest.raises(ValueError, match="LayerNorm in every site"):
        to_transformers(GPT2(**TINY, norm="derf"))


@pytest.mark.parametrize("norm_type,bias", [("layernorm", True), ("layernorm", False), ("derf", False), ("dyt", True)])
def test_nanogpt_checkpoint_loads_weights_only_with_identical_logits(tmp_path, norm_type, bias):
    torch.manual_seed(0)
    config = GPTConfig(bias=bias, norm_type=norm_type, attn_alpha_init_value=2.0, ffn_alpha_init_value=0.3,
                       dec_alpha_init_value=0.5)
    ref = _randomise(GPT(config)).eval()
    # nanoGPT's ckpt.pt as train.py writes it, from a torch.compile'd model (the _orig_mod. prefix)
    ckpt = {"model": {f"_orig_mod.{k}": v for k, v in ref.state_dict().items()},
            "model_args": {k: getattr(config, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "bias",
                                                           "vocab_size", "dropout", "norm_type",
                                                           "attn_alpha_init_value", "ffn_alpha_init_value",
                                                           "dec_alpha_init_value")},
            "iter_num": 10, "best_val_loss": torch.tensor(2.5), "config": {"learning_rate": 6e-4}}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    ours = from_nanogpt(tmp_path / "ckpt.pt").eval()
    ids = torch.randint(0, 50, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids)[0], atol=1e-5, rtol=1e-5)
    if norm_type != "layernorm":
        norm_cls = Derf if norm_type == "derf" else DyT
        assert isinstance(ours.backbone.blocks[0].norm1, norm_cls) and ours.shared_scale is not None
        assert ours.norm_specs["attn"] == f"{norm_type}(alpha_init=2.0)"
        assert ours.backbone.blocks[0].norm2.bias is not None  # the patch's Derf always has a bias
    # and back: to_nanogpt writes what the reference loads strictly
    out = to_nanogpt(ours)
    fresh = GPT(GPTConfig(**{k: v for k, v in out["model_args"].items() if k != "dropout"}))
    fresh.load_state_dict({**out["model"], **{k: v for k, v in ref.state_dict().items() if k.endswith("attn.bias")}},
                          strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids)[0], ref(ids)[0], atol=1e-5, rtol=1e-5)


def test_a_bare_nanogpt_state_dict_needs_no_model_args():
    torch.manual_seed(0)
    ref = _randomise(GPT(GPTConfig(n_embd=64, n_head=4, norm_type="derf"))).eval()  # width 64: the nano's 4 heads
    ours = from_nanogpt(ref.state_dict()).eval()
    ids = torch.randint(0, 50, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids)[0], atol=1e-5, rtol=1e-5)


def test_a_bare_nanogpt_state_dict_file_loads_what_the_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    sd = _randomise(GPT(GPTConfig(n_embd=64, n_head=4, norm_type="derf"))).state_dict()
    torch.save({f"_orig_mod.{k}": v for k, v in sd.items()}, tmp_path / "weights.pt")
    ours, again = from_nanogpt(str(tmp_path / "weights.pt")).state_dict(), from_nanogpt(sd).state_dict()
    assert ours.keys() == again.keys() and all(torch.equal(ours[k], again[k]) for k in ours)


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"match no rule.*transformer\.h\.0\.attn\.q_proj\.weight"):
        NANOGPT_LAYOUT.to_ours({"transformer.h.0.attn.q_proj.weight": torch.zeros(2, 2)})


def test_per_site_alpha_and_embedding_scale():
    model = GPT2(**TINY, norm="derf", attn_alpha=2.0, mlp_alpha=0.3)
    blocks = model.backbone.blocks
    assert blocks[1].norm1.alpha.item() == 2.0 and blocks[1].norm2.alpha.item() == pytest.approx(0.3)
    assert float(model.backbone.norm.alpha) == 1.0  # the patch's default
    assert float(model.shared_scale) == pytest.approx(math.sqrt(32))
    assert GPT2(**TINY).shared_scale is None and GPT2(**TINY, norm="rmsnorm").shared_scale is None
    assert GPT2(**TINY, norm="derf", embed_scale=False).shared_scale is None
    assert float(GPT2(**TINY, embed_scale=3.0).shared_scale) == 3.0
    # the per-site mapping: the spec's own alpha stays, the keywords fill the rest
    mixed = GPT2(**TINY, norm={"attn": "derf(alpha=0.8)", "default": "dyt"}, final_alpha=0.2)
    assert float(mixed.backbone.blocks[0].norm1.alpha) == pytest.approx(0.8)
    assert float(mixed.backbone.norm.alpha) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="given twice"):
        GPT2(**TINY, norm="derf(alpha=0.8)", attn_alpha=2.0)
    with pytest.raises(ValueError, match="has no alpha"):
        GPT2(**TINY, attn_alpha=2.0)


def test_the_embedding_scale_sets_the_scale_of_the_first_activations():
    # GPT-2 embeddings are ~N(0, 0.02): without the sqrt(d) scale a Derf block sees inputs ~100x smaller than
    # LayerNorm's normalised ones, and erf(alpha x) is then ~linear in a tiny x (the stall the patch avoids)
    ids = torch.randint(0, 50, (4, 32))
    scaled, plain = GPT2(**TINY, norm="derf"), GPT2(**TINY, norm="derf", embed_scale=False)
    torch.manual_seed(0)
    x_plain = plain.drop(plain.wte(ids) + plain.wpe(torch.arange(32)))
    assert float(x_plain.std()) < 0.05
    with torch.no_grad():
        h = scaled.wte(ids) + scaled.wpe(torch.arange(32))
        assert float((h * scaled.shared_scale).std()) > 0.1


def test_bias_false_drops_linear_and_layernorm_biases_but_not_derf_ones():
    ln = GPT2(**TINY, bias=False)
    assert all("bias" not in k for k in ln.state_dict())
    derf = GPT2(**TINY, norm="derf", bias=False)
    assert {k for k in derf.state_dict() if k.endswith("bias")} == {k for k in derf.state_dict()
                                                                    if k.endswith("bias") and "norm" in k}
    assert isinstance(GPT2(**TINY).backbone.blocks[0].norm1, LayerNorm)


# ---- KV cache and generation ------------------------------------------------------------------------------

def test_kv_cache_attention_equals_full_causal_attention():
    torch.manual_seed(0)
    attn = Attention(16, 4, causal=True).eval()
    x = torch.randn(2, 9, 16)
    full = attn(x)
    cache = KVCache()
    parts = [attn(x[:, :4], kv_cache=cache), attn(x[:, 4:5], kv_cache=cache), attn(x[:, 5:], kv_cache=cache)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-6, rtol=1e-6)
    assert cache.length == 9


@pytest.mark.parametrize("top_k", [1, 5, None])
def test_cached_and_uncached_generation_give_the_same_tokens(top_k):
    torch.manual_seed(0)
    model = GPT2(**{**TINY, "n_positions": 16}, norm="derf")
    prompt = torch.randint(0, 50, (2, 5))
    # 30 new tokens: past the 16-token context, where both paths crop to the last 16 tokens
    a = model.generate(prompt, 30, temperature=0.8, top_k=top_k, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 30, temperature=0.8, top_k=top_k, generator=torch.Generator().manual_seed(3),
                       use_cache=False)
    assert a.shape == (2, 35) and torch.equal(a, b) and torch.equal(a[:, :5], prompt)


def test_generation_crops_the_context_as_nanogpt():
    torch.manual_seed(0)
    model = GPT2(**{**TINY, "n_positions": 8}).eval()
    prompt = torch.randint(0, 50, (1, 20))  # longer than the context: only the last 8 tokens are seen
    out = model.generate(prompt, 1, top_k=1)
    with torch.no_grad():
        expected = model(prompt[:, -8:])[:, -1].argmax(-1)
    assert int(out[0, -1]) == int(expected)
    assert model.generate(prompt[0], 2, top_k=1).shape == (22,)  # a 1-D prompt gives a 1-D answer


def test_generate_restores_training_mode():
    model = GPT2(**TINY, dropout=0.1).train()
    model.generate(torch.tensor([[1, 2]]), 2)
    assert model.training


@pytest.mark.parametrize("kwargs,match", [
    ({"ids": torch.zeros(1, 0, dtype=torch.long)}, "empty"),
    ({"top_k": 0}, "top_k must be an integer >= 1"),
    ({"temperature": 0.0}, "temperature must be a finite number > 0"),
    ({"temperature": -1.0}, "temperature"),
    ({"ids": torch.tensor([[3, 50]])}, r"Token id 50 is outside the vocabulary \[0, 50\)"),
    ({"ids": torch.tensor([[-1]])}, "Token id -1"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
])
def test_bad_generation_input_is_a_clear_error(kwargs, match):
    model = GPT2(**TINY)
    args = {"ids": torch.tensor([[1, 2]]), "max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        model.generate(**args)


def test_a_training_sequence_longer_than_the_context_names_both_lengths():
    model = GPT2(**TINY)
    with pytest.raises(ValueError, match="Inputs of 33 tokens are longer than the model's context of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_a_future_token_never_changes_an_earlier_logit():
    model = GPT2(**TINY, norm="derf").eval()
    ids = torch.randint(0, 50, (1, 20))
    changed = ids.clone()
    changed[0, 12] = (ids[0, 12] + 1) % 50
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert (a[:, 12:] - b[:, 12:]).abs().amax() > 1e-4


def test_hub_round_trip(tmp_path):
    model = create_model("gpt2_nano_derf", attn_alpha=2.0).eval()
    folder = model.save_pretrained(tmp_path / "nano")
    from derf_zoo import from_pretrained

    back = from_pretrained(folder)
    ids = torch.randint(0, 65, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(back(ids), model(ids))
    assert float(back.backbone.blocks[0].norm1.alpha) == 2.0


@pytest.mark.slow
def test_embed_init_std_sets_the_token_embedding_and_the_nano_default():
    torch.manual_seed(0)
    assert abs(float(GPT2(**{**TINY, "n_embd": 64}, embed_init_std=0.32).wte.weight.std()) - 0.32) < 0.01
    assert abs(float(GPT2(**{**TINY, "n_embd": 64}).wte.weight.std()) - 0.02) < 0.001  # GPT-2's
    assert create_model("gpt2_nano_derf").embed_init_std == 0.32 and create_model("gpt2_derf").embed_init_std == 0.02
    with pytest.raises(ValueError, match="embed_init_std must be a finite number > 0"):
        GPT2(**TINY, embed_init_std=0.0)
