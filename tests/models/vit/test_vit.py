"""The ViT family against timm: same weights, same logits."""

import pytest
import timm
import torch

import derf_zoo
from derf_zoo import Derf, create_model, list_models
from derf_zoo.models.vit import TIMM_LAYOUT, VisionTransformer, from_timm


@pytest.mark.parametrize("size", ["small", "base"])
@pytest.mark.parametrize("global_pool", ["token", "avg"])
@pytest.mark.slow
def test_layernorm_vit_matches_timm_logits(size, global_pool):
    torch.manual_seed(0)
    reference = timm.create_model(f"vit_{size}_patch16_224", global_pool=global_pool, num_classes=17).eval()
    ours = from_timm(reference).eval()
    assert isinstance(ours, VisionTransformer) and ours.norm_specs["attn"] == "layernorm"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            reference.forward_head(reference.forward_features(x), pre_logits=True),
            rtol=0,
            atol=1e-5,
        )


def test_derf_vit_matches_timm_built_with_derf():
    torch.manual_seed(1)
    reference = timm.create_model("vit_small_patch16_224", global_pool="avg", num_classes=10, norm_layer=Derf).eval()
    with torch.no_grad():  # give the norms non-default values so a mix-up would show
        for m in reference.modules():
            if isinstance(m, Derf):
                m.alpha.uniform_(0.3, 1.5)
                m.shift.uniform_(-0.2, 0.2)
                m.weight.uniform_(0.5, 1.5)
    ours = from_timm(reference).eval()
    assert ours.norm_specs == {"attn": "derf", "mlp": "derf", "final": "derf"}
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_official_style_state_dict_imports():
    # The official Derf ViT is timm's ViT with every LayerNorm swapped: its state dict has alpha/shift keys.
    reference = timm.create_model("vit_tiny_patch16_224", global_pool="avg", num_classes=5, norm_layer=Derf).eval()
    ours = from_timm(reference.state_dict()).eval()
    assert ours.global_pool == "avg" and ours.norm_specs["mlp"] == "derf" and ours.backbone.depth == 12
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


def test_import_with_another_norm_keeps_the_rest():
    reference = timm.create_model("vit_tiny_patch16_224", num_classes=5)
    ours = from_timm(reference, norm="derf")
    assert isinstance(ours.backbone.blocks[0].norm1, Derf)
    torch.testing.assert_close(ours.backbone.blocks[3].mixer.qkv.weight, reference.blocks[3].attn.qkv.weight)
    torch.testing.assert_close(ours.backbone.blocks[3].norm1.weight, reference.blocks[3].norm1.weight)
    assert ours.backbone.blocks[3].norm1.alpha.item() == 0.5


def test_bad_state_dicts_are_reported():
    sd = timm.create_model("vit_tiny_patch16_224", num_classes=5).state_dict()
    with pytest.raises(ValueError, match="does not look like a timm ViT"):
        from_timm({"weight": torch.ones(3)})
    broken = dict(sd)
    broken["blocks.1.mlp.fc1.weight"] = torch.zeros(10, 192)
    with pytest.raises(ValueError, match=r"shape mismatches: backbone.blocks.1.mlp.fc1.weight"):
        from_timm(broken)
    missing = {k: v for k, v in sd.items() if k != "blocks.2.attn.proj.bias"}
    with pytest.raises(ValueError, match=r"missing keys: backbone.blocks.2.mixer.proj.bias"):
        from_timm(missing)


def test_key_mapping():
    w = torch.zeros(1)
    mapped = TIMM_LAYOUT.to_ours({"blocks.3.attn.qkv.weight": w, "norm.weight": w, "fc_norm.bias": w})
    assert set(mapped) == {"backbone.blocks.3.mixer.qkv.weight", "backbone.norm.weight", "fc_norm.bias"}


@pytest.mark.slow
def test_vit_base_parameter_count_matches_timm_up_to_the_norm_scalars():
    timm_count = sum(p.numel() for p in timm.create_model("vit_base_patch16_224").parameters())
    assert timm_count == 86_567_656
    ln = derf_zoo.vit_base_ln()
    derf = derf_zoo.vit_base_derf()
    dyt = derf_zoo.vit_base_dyt()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ln) == timm_count
    assert count(derf) == timm_count + 25 * 2  # alpha and shift in each of the 25 norms
    assert count(dyt) == timm_count + 25 * 1  # alpha only


def test_entry_points_registry_and_timm():
    assert list_models("vit_*_derf") == [
        "vit_base_derf",
        "vit_large_derf",
        "vit_mini_derf",
        "vit_nano_derf",
        "vit_small_derf",
        "vit_tiny_derf",
    ]
    model = timm.create_model("vit_tiny_derf", num_classes=7)
    assert isinstance(model, VisionTransformer) and model.global_pool == "avg" and model.num_classes == 7
    assert isinstance(model.fc_norm, Derf)
    generic = create_model("vit_tiny_patch16_224", norm="dyt", num_classes=3)
    assert generic.global_pool == "token" and generic.norm_specs["final"] == "dyt"
    assert timm.models.is_model("vit_base_derf") and timm.models.model_entrypoint("vit_base_patch16_224") is not None
    assert timm.models.model_entrypoint("vit_base_patch16_224").__module__.startswith("timm")  # timm's own kept


def test_timm_data_config_resolves():
    cfg = timm.data.resolve_model_data_config(derf_zoo.vit_small_derf())
    assert cfg["input_size"] == (3, 224, 224) and cfg["interpolation"] == "bicubic" and cfg["crop_pct"] == 0.875
    transform = timm.data.create_transform(**cfg)
    assert "Resize" in repr(transform)
    nano = timm.data.resolve_model_data_config(derf_zoo.vit_nano_derf())
    assert nano["input_size"] == (1, 16, 16)


def test_timm_style_accessors():
    model = derf_zoo.vit_tiny_derf(num_classes=4)
    x = torch.randn(2, 3, 224, 224)
    features = model.forward_features(x)
    assert features.shape == (2, 197, 192)
    assert model.forward_head(features, pre_logits=True).shape == (2, 192)
    model.reset_classifier(9)
    assert model(x).shape == (2, 9) and model.get_classifier().out_features == 9
    model.reset_classifier(0)
    assert model(x).shape == (2, 192)
    with pytest.raises(ValueError, match="global_pool='avg'"):
        model.reset_classifier(3, global_pool="token")


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"not divisible by patch size"):
        derf_zoo.vit_tiny_derf(img_size=100)
    with pytest.raises(ValueError, match=r"Unknown model 'vit_base_derff'\. Did you mean 'vit_base_derf'"):
        create_model("vit_base_derff")
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 224, 224\), got \(1, 3, 112, 112\)"):
        derf_zoo.vit_tiny_derf()(torch.randn(1, 3, 112, 112))
    with pytest.raises(ValueError, match="global_pool"):
        derf_zoo.vit_tiny_derf(global_pool="max")
    with pytest.raises(ValueError, match="Unknown norm"):
        derf_zoo.vit_tiny_derf(norm="batchnorm")


def test_pretrained_without_released_weights_names_the_recipe():
    with pytest.raises(ValueError, match=r"derf-zoo fit -c recipes/vit/vit_base_derf_in1k\.yaml"):
        derf_zoo.vit_base_derf(pretrained=True)


def test_per_site_norms_and_no_weight_decay():
    model = derf_zoo.vit_tiny_derf(norm={"attn": "derf(alpha=0.8)", "mlp": "dyt", "final": "layernorm"})
    assert model.backbone.blocks[0].norm1.alpha.item() == pytest.approx(0.8)
    assert type(model.backbone.blocks[0].norm2).__name__ == "DyT"
    assert type(model.fc_norm).__name__ == "LayerNorm"
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}


def test_family_declares_its_norm_sites_and_a_per_site_mapping_accepts_exactly_them():
    from derf_zoo.models import get_family

    family = get_family("vit")
    assert family.norm_sites == ("attn", "mlp", "final") and family.task_type == "image-classification"
    model = derf_zoo.vit_nano_derf(norm={"attn": "derf(alpha=0.8)", "default": "dyt"})
    assert model.norm_specs == {"attn": "derf(alpha_init=0.8)", "mlp": "dyt", "final": "dyt"}
    assert not hasattr(model.backbone, "norm_specs")  # resolved once, by the family
    with pytest.raises(ValueError, match=r"Unknown norm site 'atn'.*Valid choices: attn, default, final, mlp"):
        derf_zoo.vit_nano_derf(norm={"atn": "derf", "default": "derf"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 2.5}, "num_classes must be an integer >= 0, got 2.5"),
        ({"num_classes": True}, "num_classes must be an integer >= 0, got True"),
        ({"num_classes": "10"}, "num_classes must be an integer >= 0, got '10'"),
        ({"in_chans": 0}, "in_chans must be an integer >= 1, got 0"),
        ({"img_size": 0}, "img_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_model_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        derf_zoo.vit_nano_derf(**kwargs)


def test_create_model_without_a_name():
    with pytest.raises(ValueError, match="non-empty string"):
        derf_zoo.create_model(None)


def test_entry_points_are_written_out():
    import inspect

    source = inspect.getsource(derf_zoo.models.vit.entrypoints)
    for name in derf_zoo.list_models("vit_*"):
        assert f"def {name}(" in source, name
