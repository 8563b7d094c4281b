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


# ---- keyword values: parsed as YAML 1.2 would, checked before any layer is built -------------------------


@pytest.mark.parametrize(
    "spec, affine, channels_first",
    [
        ("derf(affine=false)", False, False),
        ("derf(affine=FALSE, channels_first=True)", False, True),
        ("derf(channels_first=false)", True, False),
        ("derf(channels_first=true)", True, True),
        ("derf(affine='false')", False, False),
        ({"name": "derf", "affine": "False"}, False, False),
        ({"name": "derf", "affine": False, "channels_first": "true"}, False, True),
        ("layernorm(affine=false)", False, False),
        ("rmsnorm(affine=False, channels_first=TRUE)", False, True),
    ],
)
def test_booleans_are_read_as_yaml_1_2(spec, affine, channels_first):
    factory = get_norm_layer(spec)
    layer = factory(8)
    assert (layer.weight is not None) is affine
    assert layer.channels_first is channels_first
    assert all(isinstance(v, bool) for k, v in factory.kwargs.items() if k in ("affine", "channels_first"))
    assert get_norm_layer(str(factory)) == factory  # the canonical string reads back the same


@pytest.mark.parametrize(
    "spec, bad",
    [
        ("derf(affine=yes)", "'yes'"),
        ("derf(affine=off)", "'off'"),
        ("derf(affine=1)", "1"),
        ("derf(channels_first=0)", "0"),
        ({"name": "derf", "channels_first": "no"}, "'no'"),
        ({"name": "layernorm", "affine": None}, "None"),
        ({"name": "identity", "channels_first": "1"}, "'1'"),
    ],
)
def test_other_boolean_values_are_refused(spec, bad):
    with pytest.raises(ValueError, match=rf"must be true or false.*got {bad}"):
        get_norm_layer(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "derf(alpha=1, alpha=2)",
        "derf(alpha=1, alpha_init=2)",
        "derf(shift=0.1, shift_init=0.1)",
        "layernorm(eps=1e-5, eps=1e-6)",
        {"name": "derf", "alpha": 1.0, "alpha_init": 2.0},
        {"name": "derf", "shift_init": 0.0, "shift": 0.0},
    ],
)
def test_a_keyword_given_twice_is_refused(spec):
    with pytest.raises(ValueError, match=r"more than once"):
        get_norm_layer(spec)


@pytest.mark.parametrize("name", [None, 3, True, ""])
def test_a_mapping_name_must_be_a_norm_name(name):
    with pytest.raises(ValueError, match=rf"name.*{name!r}.*derf"):
        get_norm_layer({"name": name})


@pytest.mark.parametrize(
    "spec, match",
    [
        ("derf(alpha=nan)", r"alpha_init.*nan"),
        ("derf(alpha=inf)", r"alpha_init.*inf"),
        ({"name": "derf", "alpha": float("-inf")}, r"alpha_init.*-inf"),
        ({"name": "dyt", "alpha_init": float("nan")}, r"alpha_init.*nan"),
        ("derf(alpha=0)", r"alpha_init.*got 0.*constant"),
        ({"name": "dyt", "alpha": 0.0}, r"alpha_init.*got 0\.0.*constant"),
        ({"name": "derf", "alpha": True}, r"alpha_init.*True"),
        ("derf(alpha=big)", r"alpha_init.*'auto'.*got 'big'"),
        ("derf(shift=abc)", r"shift_init.*'abc'"),
        ({"name": "derf", "shift": "abc"}, r"shift_init.*'abc'"),
        ({"name": "derf", "shift": True}, r"shift_init.*True"),
        ("derf(shift=nan)", r"shift_init.*nan"),
        ("layernorm(eps=0)", r"eps.*got 0\b"),
        ("rmsnorm(eps=-1e-5)", r"eps.*-1e-05"),
        ({"name": "layernorm", "eps": float("nan")}, r"eps.*nan"),
        ({"name": "layernorm", "eps": "abc"}, r"eps.*'abc'"),
        ("derf(kernel=fast)", r"Unknown kernel 'fast'.*fused"),
    ],
)
def test_bad_numbers_are_refused_with_the_valid_range(spec, match):
    with pytest.raises(ValueError, match=match):
        get_norm_layer(spec)


@pytest.mark.parametrize("spec", ["derf(alpha=auto)", "derf(alpha='auto')", {"name": "derf", "alpha": "auto"}])
def test_alpha_auto_still_requests_calibration(spec):
    factory = get_norm_layer(spec)
    assert str(factory) == "derf(alpha_init=auto)"
    assert factory(4).alpha_auto


def test_numbers_written_as_strings_are_read_as_numbers():
    # PyYAML (YAML 1.1) reads `alpha: 1e-3` as the string '1e-3'; YAML 1.2 reads it as a float.
    layer = get_norm_layer({"name": "derf", "alpha": "1e-3", "shift": "-0.5"})(4)
    assert layer.alpha.item() == pytest.approx(1e-3) and layer.shift.item() == -0.5
    assert get_norm_layer({"name": "layernorm", "eps": "1e-5"})(4).eps == 1e-5
    assert get_norm_layer({"name": "rmsnorm", "eps": None})(4).eps is None  # as torch.nn.RMSNorm
    with pytest.raises(ValueError, match=r"eps.*got None"):
        get_norm_layer({"name": "layernorm", "eps": None})
