import math

import pytest
import torch

from derf_zoo.norms import Derf, DyT, Identity, LayerNorm, PointwiseNorm, RMSNorm, get_norm_layer, list_norms


def test_derf_equals_independent_reference():
    torch.manual_seed(1)
    layer = Derf(6, alpha_init=0.7, shift_init=-0.2)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2)
        layer.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 6) * 3
    expected = torch.empty_like(x)
    for idx in torch.cartesian_prod(*(torch.arange(s) for s in x.shape)).tolist():
        i, j, c = idx
        expected[i, j, c] = layer.weight[c].item() * math.erf(0.7 * x[i, j, c].item() - 0.2) + layer.bias[c].item()
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6)


def test_parameter_names_shapes_and_defaults_match_the_official_code():
    derf = Derf(768)
    assert {n: tuple(p.shape) for n, p in derf.named_parameters()} == {
        "alpha": (1,),
        "shift": (1,),
        "weight": (768,),
        "bias": (768,),
    }
    assert derf.alpha.item() == 0.5 and derf.shift.item() == 0.0
    assert torch.all(derf.weight == 1) and torch.all(derf.bias == 0)
    assert {n for n, _ in DyT(8).named_parameters()} == {"alpha", "weight", "bias"}
    assert {n for n, _ in Derf(8, affine=False).named_parameters()} == {"alpha", "shift"}


def test_official_style_state_dict_loads_strictly_and_round_trips():
    # Shaped like zlab-princeton/Derf's Dynamic_erf state dict.
    official = {
        "alpha": torch.tensor([0.83]),
        "shift": torch.tensor([-0.07]),
        "weight": torch.randn(16),
        "bias": torch.randn(16),
    }
    layer = Derf(16)
    layer.load_state_dict(official, strict=True)
    again = Derf(16)
    again.load_state_dict(layer.state_dict(), strict=True)
    x = torch.randn(2, 16)
    torch.testing.assert_close(again(x), official["weight"] * torch.erf(0.83 * x - 0.07) + official["bias"])


def test_missing_key_is_an_error():
    with pytest.raises(RuntimeError, match="shift"):
        Derf(4).load_state_dict({"alpha": torch.ones(1), "weight": torch.ones(4), "bias": torch.zeros(4)})


@pytest.mark.parametrize("name", list_norms())
def test_every_norm_takes_the_slot_signature(name):
    layer = get_norm_layer(name)(
        12,
        eps=1e-5,
        affine=True,
        alpha_init=0.5,
        shift_init=0.0,
        channels_first=False,
        device="cpu",
        dtype=torch.float64,
    )
    assert layer(torch.randn(2, 3, 12, dtype=torch.float64)).shape == (2, 3, 12)
    assert all(p.dtype == torch.float64 for p in layer.parameters())


@pytest.mark.parametrize("name", ["derf", "dyt", "isru", "layernorm", "rmsnorm", "identity"])
def test_channels_first_equals_channels_last(name):
    last = get_norm_layer(name)(5)
    first = get_norm_layer(name)(5, channels_first=True)
    with torch.no_grad():
        for p in last.parameters():
            p.uniform_(0.3, 1.2)
        first.load_state_dict(last.state_dict())
    x = torch.randn(2, 5, 3, 4)
    torch.testing.assert_close(first(x), last(x.movedim(1, -1)).movedim(-1, 1), rtol=1e-5, atol=1e-6)


def test_layernorm_and_rmsnorm_match_torch():
    x = torch.randn(4, 7, 32)
    torch.testing.assert_close(LayerNorm(32, eps=1e-5)(x), torch.nn.LayerNorm(32, eps=1e-5)(x))
    torch.testing.assert_close(RMSNorm(32, eps=1e-5)(x), x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))
    torch.testing.assert_close(Identity(32)(x), x)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
@pytest.mark.parametrize("cls", [Derf, DyT, LayerNorm, RMSNorm, Identity])
def test_bad_num_features(cls, bad):
    with pytest.raises(ValueError, match="num_features"):
        cls(bad)


@pytest.mark.parametrize("name", ["derf", "dyt", "layernorm", "rmsnorm", "identity", "isru"])
def test_channel_mismatch_says_expected_and_got(name):
    layer = get_norm_layer(name)(768)
    with pytest.raises(ValueError, match=r"expected 768 .* got 512"):
        layer(torch.randn(2, 3, 512))
    first = get_norm_layer(name)(8, channels_first=True)
    with pytest.raises(ValueError, match=r"expected 8 .*dimension 1.* got 3"):
        first(torch.randn(2, 3, 8, 8))


def test_alpha_init_validation_and_auto_placeholder():
    with pytest.raises(ValueError, match="alpha_init"):
        Derf(4, alpha_init="big")
    auto = Derf(4, alpha_init="auto")
    assert auto.alpha_auto and auto.alpha.item() == 0.5
    assert "alpha_init=auto" in repr(auto)


def test_unknown_function_in_pointwise_norm():
    with pytest.raises(ValueError, match=r"Unknown point-wise function 'erff'.*'derf'"):
        PointwiseNorm(4, function="erff")


# ---- constructor checks: a direct call is refused what a spec would be refused ----------------------------


@pytest.mark.parametrize("cls", [Derf, DyT, PointwiseNorm])
@pytest.mark.parametrize(
    "bad, match",
    [
        (float("nan"), r"got nan"),
        (float("inf"), r"got inf"),
        (-float("inf"), r"got -inf"),
        (0, r"got 0\b.*constant"),
        (0.0, r"got 0\.0.*constant"),
        (True, r"got True"),
        ("0.5", r"got '0\.5'"),
        (None, r"got None"),
    ],
)
def test_alpha_init_must_be_a_finite_nonzero_number_or_auto(cls, bad, match):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: alpha_init must be .*'auto'.*{match}"):
        cls(4, alpha_init=bad)


@pytest.mark.parametrize("bad", ["abc", True, float("nan"), float("inf"), None])
def test_shift_init_must_be_a_finite_number(bad):
    with pytest.raises(ValueError, match=rf"Derf: shift_init must be a finite number, got {bad!r}"):
        Derf(4, shift_init=bad)


@pytest.mark.parametrize("cls", [Derf, DyT, LayerNorm, RMSNorm])
@pytest.mark.parametrize("bad", ["false", "False", 0, 1, None])
def test_affine_must_be_a_bool(cls, bad):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: affine must be true or false, got {bad!r}"):
        cls(4, affine=bad)


@pytest.mark.parametrize("cls", [Derf, DyT, LayerNorm, RMSNorm, Identity])
@pytest.mark.parametrize("bad", ["false", 1, None])
def test_channels_first_must_be_a_bool(cls, bad):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: channels_first must be true or false, got {bad!r}"):
        cls(4, channels_first=bad)


@pytest.mark.parametrize("cls", [LayerNorm, RMSNorm])
@pytest.mark.parametrize("bad", [0, 0.0, -1e-5, float("nan"), float("inf"), "1e-5", True])
def test_eps_must_be_a_positive_finite_number(cls, bad):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: eps must be a finite number > 0, got {bad!r}"):
        cls(4, eps=bad)


def test_valid_values_still_build():
    assert Derf(4, alpha_init=-2, shift_init=1).alpha.item() == -2.0  # a negative alpha mirrors erf: allowed
    assert Derf(4, alpha_init=1e-8).alpha.item() == pytest.approx(1e-8)
    assert RMSNorm(4, eps=None).eps is None  # torch's own default: the dtype's machine epsilon
    assert LayerNorm(4, eps=1e-12, affine=False).weight is None
    # The ignored keywords of the shared slot signature are not checked by the layers that ignore them.
    assert LayerNorm(4, alpha_init=None, shift_init=None).eps == 1e-6
