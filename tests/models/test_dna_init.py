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
