"""The fitted conversion: closed-form per-layer fit, forward order, all or nothing, and a fit that beats the naive
conversion on a trained model of every family."""

import copy

import pytest
import torch
from torch import nn

from derf_zoo import create_model
from derf_zoo.norms import Derf, DyT, LayerNorm, PointwiseNorm, RMSNorm, convert_norms, fit_pointwise_norms
from derf_zoo.norms.fit import calibration_call


class _Block(nn.Module):
    def __init__(self, dim=16, norm=None):
        super().__init__()
        self.norm = norm or nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x):
        return x + self.fc(self.norm(x))


class _Net(nn.Module):
    def __init__(self, dim=16, depth=3):
        super().__init__()
        self.blocks = nn.Sequential(*[_Block(dim) for _ in range(depth)])
        self.head = nn.Linear(dim, 4)

    def forward(self, x):
        return self.head(self.blocks(x))


def _trained_like(net):
    # LayerNorm affines away from their init, as training leaves them
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net


def test_fit_recovers_a_derf_exactly():
    """A Derf reference with known parameters is reproduced: the closed form and the search find them."""
    ref = Derf(8)
    with torch.no_grad():
        ref.alpha.fill_(0.7)
        ref.shift.fill_(0.2)
        ref.weight.copy_(torch.linspace(0.5, 2.0, 8))
        ref.bias.copy_(torch.linspace(-1, 1, 8))
    student = nn.Sequential(Derf(8))
    x = torch.randn(512, 8) * 1.7 + 0.3
    report = fit_pointwise_norms(student, {"0": ref}, x)
    (fit,) = report.layers
    assert fit.after < 1e-6 < fit.before
    assert student[0].alpha.item() == pytest.approx(0.7, rel=1e-3)
    assert student[0].shift.item() == pytest.approx(0.2, abs=1e-3)
    torch.testing.assert_close(student[0].weight, ref.weight, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(student[0].bias, ref.bias, atol=1e-3, rtol=1e-3)


def test_fit_of_layernorm_beats_naive_and_compensates_in_forward_order():
    torch.manual_seed(0)
    teacher = _trained_like(_Net()).eval()
    x = torch.randn(256, 10, 16) * 2
    naive, fitted = copy.deepcopy(teacher), copy.deepcopy(teacher)
    convert_norms(naive, "derf", copy_affine=True)
    report = convert_norms(fitted, "derf", fit=x)
    with torch.no_grad():
        want = teacher(x)
        err_naive = (naive(x) - want).pow(2).mean()
        err_fit = (fitted(x) - want).pow(2).mean()
    assert err_fit < 0.6 * err_naive
    assert [f.name for f in report.fit.layers] == ["blocks.0.norm", "blocks.1.norm", "blocks.2.norm"]
    assert all(f.after < f.before for f in report.fit.layers)
    assert "blocks.0.norm" in str(report)


def test_fit_is_deterministic_and_batches_equal_their_concatenation():
    teacher = _trained_like(_Net()).eval()
    x = torch.randn(64, 5, 16)
    a, b, c = (copy.deepcopy(teacher) for _ in range(3))
    convert_norms(a, "derf", fit=x)
    convert_norms(b, "derf", fit=x)
    convert_norms(c, "derf", fit=[x[:32], x[32:]])  # an iterable of batches
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and torch.equal(pa, pc)


def test_fit_handles_rmsnorm_dyt_channels_first_and_affine_free():
    torch.manual_seed(0)
    rms = nn.Sequential(RMSNorm(12), nn.Linear(12, 3))
    with torch.no_grad():
        rms[0].weight.uniform_(0.5, 1.5)
    x = torch.randn(200, 12) + 0.5
    report = convert_norms(rms, "dyt", fit=x)
    assert isinstance(rms[0], DyT) and report.fit.layers[0].shift is None  # DyT: alpha only, no shift
    assert report.fit.layers[0].after < report.fit.layers[0].before

    cf = nn.Sequential(LayerNorm(6, channels_first=True, affine=False))
    img = torch.randn(8, 6, 5, 5) * 3
    report = convert_norms(cf, "derf", fit=img)
    layer = cf[0]
    assert isinstance(layer, Derf) and layer.channels_first and layer.weight is None  # affine-free: alpha, shift
    assert report.fit.layers[0].after < report.fit.layers[0].before


def test_fit_is_all_or_nothing_and_keeps_modes():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.LayerNorm(4), nn.LayerNorm(4)

        def forward(self, x):
            self.a(x)
            raise RuntimeError("boom after the first norm")

    model = Boom().train()
    with pytest.raises(ValueError, match="boom after the first norm"):
        convert_norms(model, "derf", fit=torch.randn(8, 4))
    assert type(model.a) is nn.LayerNorm and type(model.b) is nn.LayerNorm and model.training

    ok = _trained_like(_Net()).train()
    convert_norms(ok, "derf", fit=torch.randn(8, 3, 16))
    assert all(m.training for m in ok.modules())  # fitted in eval mode, mode restored


def test_fit_errors_name_the_problem():
    with pytest.raises(ValueError, match="nothing to fit"):
        convert_norms(_Net(), "rmsnorm", fit=torch.randn(2, 16))
    with pytest.raises(ValueError, match="no LayerNorm/RMSNorm to convert"):
        convert_norms(nn.Sequential(nn.Linear(3, 3)), "derf", fit=torch.randn(2, 3))
    net = _Net()
    with pytest.raises(ValueError, match="empty"):
        convert_norms(net, "derf", fit=[])
    assert all(type(b.norm) is nn.LayerNorm for b in net.blocks)  # untouched
    with pytest.raises(ValueError, match="not a point-wise norm"):
        fit_pointwise_norms(_Net(), {"blocks.0.norm": nn.LayerNorm(16)}, torch.randn(2, 16))
    with pytest.raises(ValueError, match="disagree"):
        calibration_call([torch.randn(2, 3), torch.randn(2, 4)])
    with pytest.raises(ValueError, match="must be a tensor"):
        calibration_call(3)


def test_report_names_poor_layers_and_unreached_ones():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.LayerNorm(8), nn.LayerNorm(8)

        def forward(self, x):
            return self.used(x)

    model = TwoPaths()
    # tokens whose scale varies a lot: a per-token normaliser that no point-wise function can follow
    x = torch.randn(400, 8) * torch.logspace(-2, 2, 400).unsqueeze(1)
    report = convert_norms(model, "derf", fit=x, poor_threshold=0.01).fit
    assert report.not_reached == ["unused"]
    assert report.poor() == ["used"] and "poor fit" in str(report) and "not reached" in str(report)


# ---- every family: the fit beats the naive conversion on its released LayerNorm/RMSNorm model ---------------


def _family_cases():
    g = torch.Generator().manual_seed(0)
    dna = torch.randint(7, 11, (8, 256), generator=g)  # A/C/G/T ids of the character tokenizer

    def logits(out):
        return out.logits if hasattr(out, "logits") and out.logits is not None else (
            out.last_hidden_state if hasattr(out, "last_hidden_state") else out)

    return [
        ("vit_nano_ln.digits", (torch.randn(64, 1, 16, 16, generator=g),), {}, logits),
        ("dit_nano_ln.digits", (torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 1000, (64,), generator=g),
                                torch.randint(0, 10, (64,), generator=g)), {}, logits),
        ("wav2vec2_tiny_ln.speech", (torch.randn(4, 16000, generator=g),),
         {"mask_time_indices": torch.zeros(4, 49, dtype=torch.bool)}, logits),
        ("hyenadna_nano_ln.ecoli", (dna,), {}, logits),
        ("caduceus_nano_rmsnorm.ecoli", (dna,), {}, logits),
        ("gpt2_nano_ln.shakespeare", (torch.randint(0, 65, (8, 64), generator=g),), {}, logits),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name,args,kwargs,out", _family_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_fit_beats_naive_conversion_on_every_family(name, args, kwargs, out):
    teacher = create_model(name, pretrained=True).eval()
    naive, fitted = copy.deepcopy(teacher), copy.deepcopy(teacher)
    convert_norms(naive, "derf", copy_affine=True)
    convert_norms(fitted, "derf", forward=lambda m: m(*args, **kwargs))
    assert all(not isinstance(m, (nn.LayerNorm, RMSNorm)) for m in fitted.modules())
    assert any(isinstance(m, PointwiseNorm) for m in fitted.modules())
    with torch.no_grad():
        want = out(teacher(*args, **kwargs))
        err = {k: float((out(m(*args, **kwargs)) - want).pow(2).mean()) for k, m in (("naive", naive), ("fit", fitted))}
    assert err["fit"] < 0.5 * err["naive"], err


def test_dit_folds_an_affine_of_its_affine_free_norms_exactly():
    """weight * norm(x) + bias before adaLN's modulate == the folded shift rows and next-layer columns."""
    torch.manual_seed(0)
    model = create_model("dit_nano_derf", adaln_zero_init=False, final_zero_init=False).eval()
    x, t, y = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 400, 999]), torch.tensor([0, 3, 5, 9])
    folds = model.norm_folds()
    assert set(folds) == {n for n, m in model.named_modules() if isinstance(m, PointwiseNorm)}
    width = model.final_layer.linear.in_features
    affines = {n: (torch.rand(width) + 0.5, torch.randn(width) * 0.3) for n in folds}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, a, out, w=w, b=b: out * w + b)
             for n, (w, b) in affines.items()]
    with torch.no_grad():
        want = model(x, t, y)
    for h in hooks:
        h.remove()
    for n, (w, b) in affines.items():
        folds[n](w, b)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), want, atol=1e-4, rtol=1e-4)


def test_fit_folds_dit_affines_and_beats_alpha_and_shift_alone():
    teacher = create_model("dit_nano_ln.digits", pretrained=True).eval()
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(128, 1, 8, 8, generator=g), torch.randint(0, 1000, (128,), generator=g),
              torch.randint(0, 10, (128,), generator=g))
    errs = {}
    for fold in (True, False):
        student = copy.deepcopy(teacher)
        if not fold:
            student.norm_folds = None  # alpha and shift only
        report = convert_norms(student, "derf", fit=inputs).fit
        assert all(f.folded == fold for f in report.layers)
        with torch.no_grad():
            errs[fold] = float((student(*inputs) - teacher(*inputs)).pow(2).mean())
    assert errs[True] < 0.8 * errs[False]


def test_calibration_inputs_the_model_cannot_take_are_named_and_change_nothing():
    model = _Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"could not be called with the calibration inputs \(tensor \(4, 7\)"):
        convert_norms(model, "derf", fit=torch.randn(4, 7))  # 7 features where the model takes 16
    assert all(type(b.norm) is nn.LayerNorm for b in model.blocks)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pair"):
        convert_norms(_Net(), "derf", fit=(torch.randn(4, 16), torch.randint(0, 4, (4,))))
    with pytest.raises(ValueError, match="holds nan/inf"):
        convert_norms(_Net(), "derf", fit=torch.full((4, 16), float("nan")))
