import functools

import pytest
import torch

from derf_zoo.norms import Derf, DyT, LayerNorm, PointwiseNorm, get_norm_layer, list_norms, resolve_norm_sites


def test_list_norms_holds_every_family():
    names = list_norms()
    for expected in ["derf", "dyt", "layernorm", "rmsnorm", "identity", "isru", "arcsinh_clip", "saturlog"]:
        assert expected in names
    assert list_norms("*_clip") == ["arcsinh_clip", "linear_clip", "logquad_clip", "logsign_clip", "power23_clip"]


@pytest.mark.parametrize(
    "spec",
    [
        "derf(alpha=1.0, shift=0.1)",
        " Derf( alpha = 1.0 , shift_init=0.1 ) ",
        {"name": "derf", "alpha_init": 1.0, "shift": 0.1},
    ],
)
def test_spec_forms_build_the_same_layer(spec):
    layer = get_norm_layer(spec)(8)
    assert isinstance(layer, Derf)
    assert layer.alpha.item() == 1.0 and layer.shift.item() == pytest.approx(0.1)
    assert str(get_norm_layer(spec)) == "derf(alpha_init=1.0, shift_init=0.1)"


def test_aliases_classes_and_partials_pass_through():
    assert isinstance(get_norm_layer("ln")(4), LayerNorm)
    assert isinstance(get_norm_layer("erf")(4), Derf)
    assert get_norm_layer(DyT) is DyT
    partial = functools.partial(Derf, alpha_init=2.0)
    assert get_norm_layer(partial)(4).alpha.item() == 2.0
    assert isinstance(get_norm_layer("isru")(4), PointwiseNorm)


def test_spec_keywords_override_the_models_keywords_but_not_device():
    layer = get_norm_layer("layernorm(eps=1e-5)")(4, eps=1e-6, dtype=torch.float64)
    assert layer.eps == 1e-5 and layer.weight.dtype == torch.float64


def test_alpha_auto_and_bare_words():
    layer = get_norm_layer("derf(alpha=auto, affine=False)")(4)
    assert layer.alpha_auto and layer.weight is None


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"Unknown norm 'dert'\. Did you mean 'derf'\?.*layernorm"):
        get_norm_layer("dert")


def test_unknown_keyword_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"'alhpa'.*Did you mean 'alpha'.*alpha_init"):
        get_norm_layer("derf(alhpa=1.0)")
    with pytest.raises(ValueError, match=r"'dyt': 'shift'"):
        get_norm_layer("dyt(shift=0.1)")
    with pytest.raises(ValueError, match=r"'layernorm': 'alpha'"):
        get_norm_layer({"name": "layernorm", "alpha": 1.0})


@pytest.mark.parametrize("bad", ["derf(1.0)", "derf(alpha=)", "derf(**x)", "3"])
def test_unparsable_specs(bad):
    with pytest.raises(ValueError, match="norm spec"):
        get_norm_layer(bad)


def test_bad_spec_types():
    with pytest.raises(ValueError, match="'name' key"):
        get_norm_layer({"alpha": 1.0})
    with pytest.raises(TypeError, match="must be a str"):
        get_norm_layer(3.0)


def test_per_site_mapping():
    sites = resolve_norm_sites(
        {"attn": "derf(alpha=0.8)", "mlp": "derf(alpha=0.2)", "final": "layernorm"}, ("attn", "mlp", "final")
    )
    assert sites["attn"](4).alpha.item() == pytest.approx(0.8)
    assert sites["mlp"](4).alpha.item() == pytest.approx(0.2)
    assert isinstance(sites["final"](4), LayerNorm)
    with_default = resolve_norm_sites({"attn": "dyt", "default": "derf"}, ("attn", "mlp", "final"))
    assert [str(f) for f in with_default.values()] == ["dyt", "derf", "derf"]


def test_per_site_mapping_errors():
    with pytest.raises(ValueError, match=r"Unknown norm site 'atn'.*'attn'"):
        resolve_norm_sites({"atn": "derf", "default": "derf"}, ("attn", "mlp", "final"))
    with pytest.raises(ValueError, match=r"no spec for site\(s\) \['final'\]"):
        resolve_norm_sites({"attn": "derf", "mlp": "derf"}, ("attn", "mlp", "final"))
