"""saturation_by_site: the saturated fraction per norm site, in the order the stream passes them last."""

import pytest
import torch

from derf_zoo.backbone import Transformer
from derf_zoo.norms.sites import saturation_by_site


def test_fractions_follow_the_closed_form_and_the_final_site_comes_last():
    model = Transformer(8, 2, num_heads=2, norm={"attn": "derf", "mlp": "layernorm", "final": "derf(alpha=1.0)"})
    x = torch.linspace(-4, 4, 8 * 5).reshape(1, 5, 8)
    seen = {}
    model.norm.register_forward_pre_hook(lambda mod, args: seen.__setitem__("final", args[0].clone()))
    by_site = saturation_by_site(model, lambda net: net(x))
    assert list(by_site) == ["attn", "final"]  # LayerNorm sites have no alpha; final is passed last
    assert by_site["final"] == pytest.approx(float((seen["final"].abs() > 2.0).float().mean()))  # alpha 1, shift 0
    big = saturation_by_site(model, lambda net: net(1e4 * x), threshold=2.0)
    assert big["attn"] > 0.9


def test_a_model_without_pointwise_norms_gives_nothing():
    model = Transformer(8, 1, num_heads=2, norm="layernorm")
    assert saturation_by_site(model, lambda net: net(torch.randn(1, 3, 8))) == {}
