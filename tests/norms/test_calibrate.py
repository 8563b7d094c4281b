import pytest
import torch
from torch import nn

from derf_zoo import Transformer, calibrate_alpha
from derf_zoo.norms import Derf, PointwiseNorm


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

    model = TwoInputs()
    calibrate_alpha(model, (torch.randn(3, 4), torch.randn(3, 4)))
    calibrate_alpha(model, None, forward=lambda m: m(torch.ones(3, 4), torch.randn(3, 4)))


def test_degenerate_batch_and_bad_target():
    with pytest.raises(ValueError, match=r"std 0\.0"):
        calibrate_alpha(Derf(4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="target must be positive"):
        calibrate_alpha(Derf(4), torch.randn(2, 4), target=0)
