import sys

import pytest
import torch
from torch import nn

import derf_zoo
from derf_zoo import Transformer, calibrate_alpha
from derf_zoo.norms import Derf, DyT, PointwiseNorm


def _input_stds(model, x):
    stds = {}

    def record(name, args):
        stds.setdefault(name, args[0].std().item())  # returns None: the input is left as it is

    hooks = [
        m.register_forward_pre_hook(lambda mod, args, n=n: record(n, args))
        for n, m in model.named_modules()
        if isinstance(m, PointwiseNorm)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return stds


@pytest.mark.parametrize("target", [1.0, 2.5])
def test_every_layer_hits_the_target_in_forward_order(target):
    model = Transformer(32, 3, num_heads=4, norm="derf", drop_path_rate=0.2, proj_drop=0.1)
    x = torch.randn(4, 10, 32) * 5
    report = calibrate_alpha(model, x, target=target)
    assert len(report) == 7  # 3 x (attn, mlp) + final
    assert model.training  # mode restored
    model.eval()
    stds = _input_stds(model, x)
    for name, module in model.named_modules():
        if isinstance(module, PointwiseNorm):
            assert module.alpha.item() * stds[name] == pytest.approx(target, rel=1e-5), name
    assert list(report.alphas()) == list(stds)  # forward order
    assert "input std" in str(report)


def test_only_auto_and_untouched_others():
    model = nn.Sequential(Derf(8, alpha_init="auto"), nn.Linear(8, 8), Derf(8, alpha_init=0.5))
    report = calibrate_alpha(model, torch.randn(16, 8) * 3, only_auto=True)
    assert list(report.alphas()) == ["0"]
    assert model[2].alpha.item() == 0.5 and model[0].alpha.item() != 0.5


def test_custom_forward_and_tuple_batches():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = Derf(4)

        def forward(self, a, b):
            return self.norm(a + b)

    # Each call must feed both inputs to the model: alpha lands on 1 / std(a + b), which differs from 1 / std(a).
    model = TwoInputs()
    a, b = torch.randn(3, 4), 4 * torch.randn(3, 4)
    report = calibrate_alpha(model, (a, b))
    assert model.norm.alpha.item() == pytest.approx(1 / (a + b).std().item(), rel=1e-5)
    assert list(report.alphas()) == ["norm"]
    b = 3 * torch.randn(3, 4)
    report = calibrate_alpha(model, None, forward=lambda m: m(torch.ones(3, 4), b), target=2.0)
    assert model.norm.alpha.item() == pytest.approx(2.0 / (1 + b).std().item(), rel=1e-5)
    assert list(report.alphas()) == ["norm"]


def test_degenerate_layer_input_and_bad_target():
    # The batch varies, but a layer inside sees a constant input: its std cannot set alpha.
    model = nn.Sequential(nn.Linear(4, 4), Derf(4))
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    with pytest.raises(ValueError, match=r"input of '1' has std 0\.0"):
        calibrate_alpha(model, torch.randn(2, 4))
    with pytest.raises(ValueError, match="target must be a finite number > 0"):
        calibrate_alpha(Derf(4), torch.randn(2, 4), target=0)


# ---- reliability: all or nothing, frozen alphas, bad targets and batches ----------------------------------


class _Fail(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom")


def _alphas(model):
    return {n: m.alpha.item() for n, m in model.named_modules() if isinstance(m, PointwiseNorm)}


def test_a_failure_part_way_leaves_every_alpha_as_it_was():
    zero = nn.Linear(8, 8)
    nn.init.zeros_(zero.weight)
    nn.init.zeros_(zero.bias)
    for tail in (zero, _Fail()):  # a degenerate layer input (our error) and a model error (not ours)
        model = nn.Sequential(Derf(8, alpha_init=0.7), nn.Linear(8, 8), DyT(8, alpha_init=0.3), tail, Derf(8))
        before = _alphas(model)
        with pytest.raises((ValueError, RuntimeError)):
            calibrate_alpha(model, torch.randn(16, 8) * 3)
        assert _alphas(model) == before  # the two layers before the failure were set, then restored


def test_frozen_alphas_are_left_alone_unless_asked():
    model = nn.Sequential(Derf(8), nn.Linear(8, 8), Derf(8))
    model[0].alpha.requires_grad_(False)
    x = torch.randn(16, 8) * 3
    report = calibrate_alpha(model, x)
    assert model[0].alpha.item() == 0.5 and model[2].alpha.item() != 0.5
    assert list(report.alphas()) == ["2"] and report.skipped_frozen == ["0"]
    assert "frozen" in str(report)
    report = calibrate_alpha(model, x, include_frozen=True)
    assert model[0].alpha.item() == pytest.approx(1 / x.std().item(), rel=1e-5)
    assert list(report.alphas()) == ["0", "2"] and not model[0].alpha.requires_grad


@pytest.mark.parametrize("target", [0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_target_is_refused(target):
    model = nn.Sequential(Derf(4))
    with pytest.raises(ValueError, match=rf"target must be a finite number > 0 .*got {target!r}"):
        calibrate_alpha(model, torch.randn(2, 4), target=target)
    assert model[0].alpha.item() == 0.5


@pytest.mark.parametrize("wrap", [tuple, list])
def test_an_inputs_targets_pair_says_pass_the_inputs_only(wrap):
    model = derf_zoo.vit_nano_derf()
    x, y = torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,))
    before = _alphas(model)
    with pytest.raises(ValueError, match=r"2 items.*pass the inputs only.*batch\[0\]"):
        calibrate_alpha(model, wrap((x, y)))
    assert _alphas(model) == before
    calibrate_alpha(model, x)  # the fix the message gives works


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the hint is an exception note (add_note: 3.11+)")
def test_a_pair_the_signature_accepts_but_the_model_rejects_gets_the_hint():
    # Like Transformer.forward(x, cond=None): (x, y) binds, then the labels fail inside the model.
    class Conditioned(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.cond = Derf(16), nn.Linear(8, 16)

        def forward(self, x, cond=None):
            return self.norm(x if cond is None else x + self.cond(cond).unsqueeze(1))

    model = Conditioned()
    with pytest.raises(RuntimeError, match=r"(?s)2 items.*pass the inputs only") as exc:
        calibrate_alpha(model, (torch.randn(2, 5, 16), torch.randint(0, 10, (2,))))
    assert "pass the inputs only" not in str(exc.value)  # a note under the model's own error, which is kept
    calibrate_alpha(model, (torch.randn(2, 5, 16), torch.randn(2, 8)))  # a real (x, cond) pair still works


def test_a_layer_error_with_several_inputs_gets_no_pair_hint():
    model = nn.Sequential(nn.Linear(4, 4), Derf(4))
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[0].bias)

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, a, b):
            return self.inner(a + b)

    with pytest.raises(ValueError, match="has std 0") as exc:
        calibrate_alpha(Two(), (torch.randn(2, 4), torch.randn(2, 4)))
    assert not getattr(exc.value, "__notes__", None)


@pytest.mark.parametrize(
    "batch, match",
    [
        (torch.zeros(4, 1, 16, 16), r"every value is 0\.0"),
        (torch.full((4, 1, 16, 16), 0.3), r"every value is 0\.3"),
        (torch.randn(4, 1, 16, 16).index_fill_(0, torch.tensor([1]), float("nan")), r"non-finite"),
        (torch.randn(4, 1, 16, 16).index_fill_(0, torch.tensor([2]), float("inf")), r"non-finite"),
    ],
)
def test_a_constant_or_non_finite_batch_is_refused(batch, match):
    # A ViT fed zeros still has varying layer inputs (position embedding, biases): the calibration would
    # measure the model, not the data, so the batch itself is checked.
    model = derf_zoo.vit_nano_derf()
    before = _alphas(model)
    with pytest.raises(ValueError, match=match):
        calibrate_alpha(model, batch)
    assert _alphas(model) == before


def test_several_inputs_are_refused_only_when_all_are_constant():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = Derf(4)

        def forward(self, a, mask):
            return self.norm(a * mask)

    model = TwoInputs()
    calibrate_alpha(model, {"a": torch.randn(3, 4), "mask": torch.ones(3, 4)})  # a constant mask is fine
    with pytest.raises(ValueError, match="every value"):
        calibrate_alpha(model, {"a": torch.zeros(3, 4), "mask": torch.ones(3, 4)})


def test_the_classification_task_call_still_works():
    # LightningModule.on_train_batch_start calls calibrate_alpha(model, batch[0], target=..., only_auto=True).
    model = derf_zoo.vit_nano_derf(norm="derf(alpha=auto)")
    batch = (torch.randn(4, 1, 16, 16), torch.randint(0, 10, (4,)))
    report = calibrate_alpha(model, batch[0], target=1.0, only_auto=True)
    assert len(report) == len(_alphas(model)) > 0
