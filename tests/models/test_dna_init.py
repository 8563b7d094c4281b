"""The DNA families' width-dependent init (issue 18): embedding std and per-site alpha as model arguments."""

import pytest

from derf_zoo.models import create_model
from derf_zoo.norms.registry import resolve_norm_sites


def _embedding(model):
    return (model.embeddings.weight if hasattr(model, "embeddings") else model.word_embeddings.weight).detach()


@pytest.mark.parametrize(("name", "std"), [("hyenadna_tiny_1k", 0.02), ("hyenadna_nano", 0.32),
                                           ("caduceus_ph_1k", 0.02), ("caduceus_nano", 0.32)])  # fmt: skip
def test_embedding_std_follows_the_size_and_the_argument(name, std):
    assert float(_embedding(create_model(name)).std()) == pytest.approx(std, rel=0.15)
    assert float(_embedding(create_model(name, embed_init_std=0.05)).std()) == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "0.3", True])
def test_bad_embed_init_std_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="embed_init_std"):
        create_model("hyenadna_nano", embed_init_std=bad)


@pytest.mark.parametrize("name", ["hyenadna_nano", "caduceus_nano"])
def test_nano_final_site_defaults_to_a_small_alpha(name):
    model = create_model(name, norm="derf")
    assert float(model.backbone.norm.alpha) == pytest.approx(0.1)
    assert float(model.backbone.blocks[0].norm1.alpha) == pytest.approx(0.5)
    # an alpha the spec sets itself wins over the site default
    assert float(create_model(name, norm="derf(alpha=0.7)").backbone.norm.alpha) == pytest.approx(0.7)
    # the released Derf entry points say it explicitly
    derf = create_model(f"{name}_derf")
    assert float(derf.backbone.norm.alpha) == pytest.approx(0.1)
    assert derf.norm_specs["final"] == "derf(alpha_init=0.1, shift_init=0.0)"


def test_paper_rows_keep_the_papers_alpha_everywhere():
    model = create_model("hyenadna_tiny_1k_derf")
    assert float(model.backbone.norm.alpha) == pytest.approx(0.5)


def test_site_alpha_leaves_normalizing_layers_and_checks_sites():
    sites = resolve_norm_sites("layernorm", ("attn", "final"), {"final": 0.1})
    assert str(sites["final"]) == "layernorm"
    with pytest.raises(ValueError, match=r"'fnal'.*final"):
        resolve_norm_sites("derf", ("attn", "final"), {"fnal": 0.1})
    with pytest.raises(ValueError, match="alpha_init"):
        resolve_norm_sites("derf", ("attn", "final"), {"final": 0.0})


def test_alphabet_prior_is_zero_on_the_bases_only():
    from derf_zoo.data.dna import A_ID, N_ID, UNSEEN_LOGIT, VOCAB, alphabet_prior

    prior = alphabet_prior(16)
    assert [VOCAB[i] for i in range(len(VOCAB)) if prior[i] == 0] == list("ACGTN")
    assert prior[:A_ID].eq(UNSEEN_LOGIT).all() and prior[N_ID + 1 :].eq(UNSEEN_LOGIT).all()
    with pytest.raises(ValueError, match="cover the DNA tokenizer's 12 tokens, got 8"):
        alphabet_prior(8)


@pytest.mark.parametrize("arch", ["hyenadna_nano", "caduceus_nano"])
def test_head_bias_adds_the_prior_to_the_tied_head_and_draws_nothing(arch):
    import torch
    import torch.nn.functional as F

    from derf_zoo.data.dna import alphabet_prior

    torch.manual_seed(0)
    with_bias = create_model(arch, norm="derf", head_bias=True).eval()
    torch.manual_seed(0)
    without = create_model(arch, norm="derf", head_bias=False).eval()
    assert without.head_bias is None and "head_bias" not in without.state_dict()
    plain = {k: v for k, v in with_bias.state_dict().items() if k != "head_bias"}
    assert plain.keys() == without.state_dict().keys()
    assert all(torch.equal(v, without.state_dict()[k]) for k, v in plain.items())  # the same weights: no extra draw
    assert torch.equal(with_bias.head_bias.detach(), alphabet_prior(with_bias.head_bias.numel()))
    ids = torch.randint(7, 11, (2, 24))
    with torch.no_grad():
        assert torch.allclose(with_bias(ids), without(ids) + with_bias.head_bias, atol=1e-6)
        hidden = with_bias.forward_features(ids)
        table = with_bias.embeddings.weight if arch == "hyenadna_nano" else with_bias.embedding_weight
        assert torch.allclose(with_bias.forward_head(hidden), F.linear(hidden, table, with_bias.head_bias))
    # a 1-D parameter: in the optimizer's no-decay group, as every bias
    from derf_zoo.tasks.optim import param_groups

    no_decay = next(g for g in param_groups(with_bias, 0.1) if g["weight_decay"] == 0.0)["params"]
    assert any(p is with_bias.head_bias for p in no_decay)


def test_caduceus_ps_stays_reverse_complement_equivariant_with_a_learned_head_bias():
    import torch

    from derf_zoo.models.caduceus.rcps import _reverse_complement_with_map

    model = create_model("caduceus_ps_1k", d_model=8, n_layer=2, head_bias=True).eval()
    with torch.no_grad():
        model.head_bias.normal_()  # trained: no longer complement-symmetric
        ids = torch.randint(7, 11, (2, 20))
        logits = model(ids)
        rc_logits = model(_reverse_complement_with_map(ids, model.complement_map))
    assert torch.allclose(rc_logits.flip(1)[..., model.complement_map], logits, atol=1e-5)


@pytest.mark.parametrize("arch", ["hyenadna_nano_derf", "caduceus_nano_derf"])
def test_the_reference_layout_refuses_a_head_bias_instead_of_dropping_it(arch):
    from derf_zoo.models.caduceus import to_caduceus
    from derf_zoo.models.hyenadna import to_hyenadna

    export = to_hyenadna if arch.startswith("hyenadna") else to_caduceus
    with pytest.raises(ValueError, match=r"has a head_bias .* no place for"):
        export(create_model(arch))
    assert "head_bias" not in export(create_model(arch, head_bias=False))
