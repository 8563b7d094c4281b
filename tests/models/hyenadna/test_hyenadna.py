"""HyenaDNA: the FFT convolution, causality, the public layout (parity with a reference written from
the HyenaDNA code), the norm slot, the tied head, bad input, and the Hub round trip."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from derf_zoo.layers.mixers import get_mixer
from derf_zoo.models import create_model, from_hyenadna
from derf_zoo.models.hyenadna import HYENADNA_LAYOUT, HyenaDNA
from derf_zoo.models.hyenadna.fft_conv import fft_causal_conv
from derf_zoo.models.hyenadna.hyena import HyenaOperator
from derf_zoo.norms.layers import Derf, LayerNorm
from tests.models.hyenadna._hyenadna_reference import RefHyenaDNALM

TINY = {"d_model": 16, "n_layer": 2, "max_seq_len": 40, "mixer": "hyena(filter_order=8)", "embed_dropout": 0.0}


def _tiny(**kwargs) -> HyenaDNA:
    torch.manual_seed(0)
    return HyenaDNA(**{**TINY, **kwargs}).eval()


def _direct_causal_conv(u, k, skip):
    # y[t] = sum_{s <= t} k[t - s] u[s] + skip * u[t], as a depthwise conv1d with left padding
    length, channels = u.shape[-1], u.shape[-2]
    y = F.conv1d(F.pad(u, (length - 1, 0)), k.flip(-1).unsqueeze(1), groups=channels)
    return y + u * skip.unsqueeze(-1)


@pytest.mark.parametrize("length", [1, 7, 32])
def test_fft_convolution_equals_the_direct_causal_convolution(length):
    g = torch.Generator().manual_seed(length)
    u, k = torch.randn(2, 3, length, generator=g), torch.randn(3, length, generator=g)
    skip = torch.randn(3, generator=g)
    torch.testing.assert_close(fft_causal_conv(u, k, skip), _direct_causal_conv(u, k, skip), atol=1e-5, rtol=1e-5)


def test_fft_convolution_refuses_a_filter_of_another_length():
    with pytest.raises(ValueError, match="filter has length 5 but the input 6"):
        fft_causal_conv(torch.zeros(1, 2, 6), torch.zeros(2, 5))


@pytest.mark.parametrize("norm", ["layernorm", "derf"])
def test_a_future_token_never_changes_an_earlier_output(norm):
    model = _tiny(norm=norm).double()  # float64: FFT round-off far below the tolerance
    ids = torch.randint(0, 12, (2, 33), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 20] = (ids[:, 20] + 1) % 12
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :20], b[:, :20], atol=1e-12, rtol=0)
    assert (a[:, 20:] - b[:, 20:]).abs().amax() > 1e-4  # the change does reach position 20 and later


def test_the_mixer_alone_is_causal_at_any_order():
    torch.manual_seed(0)
    mixer = HyenaOperator(8, order=3, filter_order=8, l_max=16).double()
    x = torch.randn(1, 16, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 9:] = torch.randn(1, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(mixer(x)[:, :9], mixer(y)[:, :9], atol=1e-12, rtol=0)


@pytest.mark.parametrize(("order", "shift", "prefix"), [(2, 0.0, "model."), (2, 0.05, "hyena."), (3, 0.0, "")])
def test_the_public_layout_loads_with_identical_logits(order, shift, prefix):
    torch.manual_seed(order)
    ref = RefHyenaDNALM(d_model=16, n_layer=2, l_max=40, order=order, filter_order=8, shift=shift).eval()
    sd = {prefix + k: v for k, v in ref.state_dict().items()}
    assert any(k.endswith("implicit_filter.3.freq") for k in sd)  # the shared sine, listed per use
    model = from_hyenadna(sd, embed_dropout=0.0,
                          mixer={"modulation_shift": shift} if shift else {}).eval()  # fmt: skip
    assert model.vocab_size == 16 and model.max_seq_len == 40 and model.backbone.blocks[0].mixer.order == order
    ids = torch.randint(0, 12, (3, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ref(ids), atol=1e-5, rtol=1e-5)


def test_the_hf_and_checkpointed_forms_load_too():
    # -hf safetensors keep one copy of a shared tensor (the sine's freq: "_keys_to_ignore_on_load_missing");
    # models trained with checkpoint_mixer/mlp name their sub-layers ".mixer.layer." / ".mlp.layer.".
    torch.manual_seed(5)
    ref = RefHyenaDNALM(l_max=40, filter_order=8).eval()
    sd = {}
    for k, v in ref.state_dict().items():
        if k.endswith(("implicit_filter.3.freq", "implicit_filter.5.freq")):
            continue
        sd["model." + k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer.")] = v
    model = from_hyenadna(sd, embed_dropout=0.0).eval()
    ids = torch.randint(0, 12, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ref(ids), atol=1e-5, rtol=1e-5)


def test_the_layout_names_each_public_key():
    to_ours = lambda key: set(HYENADNA_LAYOUT.to_ours({key: torch.zeros(1)}))  # noqa: E731
    assert to_ours("model.backbone.embeddings.word_embeddings.weight") == {"embeddings.weight"}
    assert to_ours("hyena.backbone.ln_f.bias") == {"backbone.norm.bias"}
    assert to_ours("lm_head.weight") == set()  # a tied copy of the embedding: checked, not loaded twice
    assert to_ours("model.backbone.layers.3.mixer.filter_fn.implicit_filter.1.freq") == {
        "backbone.blocks.3.mixer.filter_fn.sin.freq"}
    assert to_ours("backbone.layers.0.mlp.fc2.weight") == {"backbone.blocks.0.mlp.fc2.weight"}


def test_missing_and_extra_keys_are_listed():
    sd = RefHyenaDNALM(l_max=40, filter_order=8).state_dict()
    del sd["backbone.layers.1.mixer.out_proj.bias"]
    sd["backbone.layers.0.mixer.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        from_hyenadna(sd)
    assert "backbone.blocks.1.mixer.out_proj.bias" in str(err.value)
    assert "backbone.blocks.0.mixer.extra.weight" in str(err.value)


def test_an_untied_head_or_differing_shared_sines_are_refused():
    sd = RefHyenaDNALM(l_max=40, filter_order=8).state_dict()
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    with pytest.raises(ValueError, match=r"lm_head\.weight"):
        from_hyenadna(sd)
    sd = RefHyenaDNALM(l_max=40, filter_order=8).state_dict()
    sd["backbone.layers.0.mixer.filter_fn.implicit_filter.5.freq"] = torch.zeros(1, 8)
    with pytest.raises(ValueError, match=r"implicit_filter\.5\.freq"):
        from_hyenadna(sd)


def test_fixed_buffers_absent_from_the_weights_are_rebuilt():
    ref = RefHyenaDNALM(l_max=40, filter_order=8).eval()
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith(("pos_emb.z", "pos_emb.t", "deltas"))}
    with pytest.raises(ValueError, match="max_seq_len"):
        from_hyenadna(sd)
    model = from_hyenadna(sd, max_seq_len=40, embed_dropout=0.0).eval()
    ids = torch.randint(0, 12, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), ref(ids), atol=1e-5, rtol=1e-5)


def test_importing_into_derf_keeps_every_other_weight():
    ref = RefHyenaDNALM(l_max=40, filter_order=8)
    model = from_hyenadna(ref.state_dict(), norm="derf")
    assert sum(isinstance(m, Derf) for m in model.modules()) == 5
    torch.testing.assert_close(model.backbone.blocks[1].mlp.fc1.weight, ref.backbone.layers[1].mlp.fc1.weight)


def test_norm_derf_swaps_exactly_the_slot_sites():
    ln, derf = _tiny(), _tiny(norm="derf")
    ln_norms = {n for n, m in ln.named_modules() if isinstance(m, LayerNorm)}
    derf_norms = {n for n, m in derf.named_modules() if isinstance(m, Derf)}
    assert ln_norms == derf_norms == {"backbone.blocks.0.norm1", "backbone.blocks.0.norm2", "backbone.blocks.1.norm1",
                                      "backbone.blocks.1.norm2", "backbone.norm"}  # fmt: skip
    assert not any(isinstance(m, (nn.LayerNorm, LayerNorm)) for m in derf.modules())
    rest = lambda model, norms: {k: v.shape for k, v in model.state_dict().items()  # noqa: E731
                                 if not k.startswith(tuple(n + "." for n in norms))}  # fmt: skip
    assert rest(ln, ln_norms) == rest(derf, derf_norms)
    assert {m.norm_site for m in derf.modules() if isinstance(m, Derf)} == {"attn", "mlp", "final"}
    per_site = _tiny(norm={"attn": "derf", "default": "layernorm"})
    assert isinstance(per_site.backbone.blocks[0].norm1, Derf) and isinstance(per_site.backbone.norm, LayerNorm)


def test_the_head_is_tied_to_the_embedding():
    model = _tiny()
    vocab_shaped = [n for n, p in model.named_parameters() if p.shape == (16, 16) and "embeddings" in n]
    assert vocab_shaped == ["embeddings.weight"] and "lm_head.weight" not in model.state_dict()
    ids = torch.randint(0, 12, (2, 9))
    torch.testing.assert_close(model(ids), model.forward_features(ids) @ model.embeddings.weight.T)
    model(ids).sum().backward()
    assert model.embeddings.weight.grad is not None


def test_an_input_longer_than_the_max_length_is_refused_by_name():
    model = _tiny()
    with pytest.raises(ValueError, match=r"41 tokens are longer than the model's context of 40 tokens \(max_seq_len"):
        model(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="l_max=16"):
        HyenaOperator(8, filter_order=8, l_max=16)(torch.zeros(1, 17, 8))
    with pytest.raises(ValueError, match="token ids of shape"):
        model(torch.zeros(1, 4, 16))


def test_mixer_spec_and_its_errors():
    mixer = get_mixer("hyena(order=3, filter_order=8, l_max=12)")(8)
    assert isinstance(mixer, HyenaOperator) and mixer.order == 3 and mixer.l_max == 12
    assert _tiny().backbone.blocks[0].mixer.l_max == 40  # the model's max length fills in l_max
    with pytest.raises(ValueError, match="filter_ordr"):
        get_mixer("hyena(filter_ordr=8)")
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        HyenaOperator(8, order=1)


def test_entry_points_and_paper_rows():
    tiny = create_model("hyenadna_tiny_1k")
    assert (tiny.d_model, len(tiny.backbone.blocks), tiny.max_seq_len, tiny.vocab_size) == (128, 2, 1026, 16)
    assert tiny.norm_specs["attn"].startswith("layernorm")
    derf = create_model("hyenadna_tiny_1k_derf")
    assert set(derf.norm_specs.values()) == {"derf(alpha_init=0.5, shift_init=0.0)"}
    assert create_model("hyenadna_tiny_1k", norm="dyt").norm_specs["final"].startswith("dyt")
    small = create_model("hyenadna_small_32k_ln", max_seq_len=1024)  # the 32k filter buffers are not needed here
    assert (small.d_model, len(small.backbone.blocks), small.backbone.blocks[0].mlp.fc1.out_features) == (256, 4, 1024)
    odd = HyenaDNA(d_model=384, n_layer=1, d_inner=1000, max_seq_len=8, mixer="hyena(filter_order=4)")
    assert odd.backbone.blocks[0].mlp.fc1.out_features == 1000


def test_hub_round_trip(tmp_path):
    from derf_zoo.models import from_pretrained

    model = create_model("hyenadna_tiny_1k_derf", d_model=16, max_seq_len=40, embed_dropout=0.0).eval()
    model.save_pretrained(tmp_path / "hyena")
    again = from_pretrained(tmp_path / "hyena").eval()
    ids = torch.randint(0, 12, (1, 40))
    with torch.no_grad():
        torch.testing.assert_close(again(ids), model(ids))
