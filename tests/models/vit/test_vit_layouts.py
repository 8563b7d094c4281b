"""ViT's timm layout both ways: round trips, the registered layout against from_timm, timm loading to_timm's
output strictly, and official Derf ViT training checkpoints (pickled argparse.Namespace) read weights-only."""

import argparse
import logging
import pickle

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer as TimmViT

from derf_zoo import Derf, create_model
from derf_zoo.models import get_family
from derf_zoo.models.vit import TIMM_LAYOUT, from_timm, to_timm
from derf_zoo.weights import LayoutError, load_layout

SMALL = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2, "num_classes": 3}
CASES = [
    {"global_pool": "token"},
    {"global_pool": "avg", "norm_layer": Derf},  # the official Derf ViT: timm's avg-pool ViT with Derf norms
    {"global_pool": "token", "init_values": 1e-5},  # layer scale
]


def _timm(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = TimmViT(**SMALL, **kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # nothing at its default value, so a mix-up shows
        for p in model.parameters():
            p.copy_(0.5 + 0.2 * torch.randn(p.shape, generator=g))
    return model


def _x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _same(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("kwargs", CASES)
def test_round_trips_are_exact(kwargs):
    reference = _timm(**kwargs)
    theirs = reference.state_dict()
    _same(TIMM_LAYOUT.to_theirs(TIMM_LAYOUT.to_ours(theirs)), theirs)  # timm -> ours -> timm
    ours = from_timm(reference)
    _same(from_timm(to_timm(ours)).state_dict(), ours.state_dict())  # import -> export -> import


def test_a_ddp_state_dict_imports_like_the_plain_one():
    reference = _timm(**CASES[1])
    wrapped = {"module." + k: v for k, v in reference.state_dict().items()}  # saved from a DDP-wrapped model
    _same(from_timm(wrapped).state_dict(), from_timm(reference.state_dict()).state_dict())


@pytest.mark.parametrize("kwargs", CASES)
def test_timm_loads_the_export_strictly_with_the_same_outputs(kwargs):
    ours = from_timm(_timm(**kwargs)).eval()
    timm_model = TimmViT(**SMALL, **kwargs).eval()
    timm_model.load_state_dict(to_timm(ours), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(timm_model(_x()), ours(_x()), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kwargs", CASES[:2])
def test_the_registered_layout_loads_what_from_timm_does(kwargs):
    reference = _timm(**kwargs)
    imported = from_timm(reference).eval()
    norm = "derf" if kwargs.get("norm_layer") is Derf else "layernorm"
    size = {k: v for k, v in SMALL.items() if k != "img_size"}
    model = create_model("vit_tiny_patch16_224", img_size=32, global_pool=kwargs["global_pool"], norm=norm, **size)
    load_layout(model.eval(), reference.state_dict(), get_family("vit").layout("timm"), source="test")
    _same(model.state_dict(), imported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), imported(_x()), rtol=0, atol=0)


def test_bad_keys_are_named():
    sd = _timm().state_dict()
    with pytest.raises(LayoutError, match=r"match no rule of the layout: 'blocks.0.attn.q_norm.weight'"):
        TIMM_LAYOUT.to_ours({**sd, "blocks.0.attn.q_norm.weight": torch.zeros(32)})  # timm's qk_norm
    with pytest.raises(LayoutError, match=r"'dist_token'"):
        from_timm({**sd, "dist_token": torch.zeros(1, 1, 64)})  # DeiT's distillation token
    with pytest.raises(LayoutError, match=r"'module.head.bias' and another key are both 'head.bias'"):
        TIMM_LAYOUT.to_ours({**sd, "module.head.bias": sd["head.bias"]})
    with pytest.raises(LayoutError, match=r"has no place for 'extra.weight'"):
        TIMM_LAYOUT.to_theirs({"extra.weight": torch.zeros(1)})


def _official_checkpoint(path, *, ema_eval):
    """What the official Derf ViT trainer (ConvNeXt's main.py) saves: raw and EMA networks, the optimizer, and its
    command line as an argparse.Namespace."""
    raw, ema = _timm(seed=0, global_pool="avg", norm_layer=Derf), _timm(seed=1, global_pool="avg", norm_layer=Derf)
    args = argparse.Namespace(model="vit_base_patch16_224", normtype="derf", model_ema=True, model_ema_eval=ema_eval)
    optimizer = {"state": {}, "param_groups": []}
    torch.save({"model": raw.state_dict(), "model_ema": ema.state_dict(), "optimizer": optimizer, "epoch": 299,
                "scaler": {}, "args": args}, path)  # fmt: skip
    return raw, ema


@pytest.mark.parametrize("ema_eval", [False, True])
def test_official_training_checkpoints_are_read_weights_only(tmp_path, caplog, ema_eval):
    path = tmp_path / "checkpoint-best.pth"
    raw, ema = _official_checkpoint(path, ema_eval=ema_eval)
    with pytest.raises(pickle.UnpicklingError, match="Namespace"):  # what the README's plain advice runs into
        torch.load(path, weights_only=True)
    with caplog.at_level(logging.INFO, logger="derf_zoo.models.vit.layouts"):
        ours = from_timm(path).eval()
    picked, key = (ema, "model_ema") if ema_eval else (raw, "model")
    assert f"read the '{key}' network" in caplog.text
    assert ours.norm_specs["attn"] == "derf" and ours.global_pool == "avg"
    with torch.no_grad():
        torch.testing.assert_close(ours(_x()), picked(_x()), rtol=0, atol=1e-5)
    other = from_timm(path, weights="model" if ema_eval else "model_ema")  # the other one, when asked
    _same(to_timm(other), (raw if ema_eval else ema).state_dict())
    with pytest.raises(ValueError, match=r"holds no state dict \(looked for ema\)"):
        from_timm(path, weights="ema")


class _Payload:
    pass


def test_a_file_with_any_other_class_is_refused(tmp_path):
    torch.save({"model": _timm().state_dict(), "args": _Payload()}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"from_timm: cannot read .*bad.pth with weights_only=True"):
        from_timm(tmp_path / "bad.pth")
    torch.save(_timm().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="is a bare state dict"):
        from_timm(str(tmp_path / "plain.pt"), weights="model_ema")
    with pytest.raises(FileNotFoundError, match="from_timm: no weights file"):
        from_timm(tmp_path / "missing.pth")
