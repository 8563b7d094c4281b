import copy

import pytest
import timm
import torch
from torch import nn

from derf_zoo.norms import Derf, DyT, RMSNorm, convert_norms


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


def test_timm_vit_every_layernorm_replaced():
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    report = convert_norms(model, "derf")
    # 12 blocks x (norm1, norm2) + the final norm
    assert len(report) == 25 and _count(model, Derf) == 25
    assert _count(model, nn.LayerNorm) == 0
    assert report.counts() == {("LayerNorm", "Derf"): 25}
    assert "blocks.0.norm1" in str(report)
    model(torch.randn(1, 3, 224, 224)).sum().backward()


def test_timm_vit_avg_pool_converts_fc_norm():
    model = timm.create_model("vit_tiny_patch16_224", global_pool="avg", num_classes=10)
    report = convert_norms(model, "derf")
    assert len(report) == 25 and {r.name for r in report} >= {"fc_norm"}


def test_timm_convnext_layernorm2d_is_channels_first():
    model = timm.create_model("convnext_atto", num_classes=10)
    report = convert_norms(model, "derf(alpha=0.7, shift=0.1)")
    assert len(report) == 17 and report.counts() == {("LayerNorm2d", "Derf"): 17}
    stem_norm = model.stem[1]
    assert stem_norm.channels_first
    with torch.no_grad():
        stem_norm.weight.uniform_(0.5, 1.5)
        stem_norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, stem_norm.num_features, 5, 6)
    w, b = stem_norm.weight[:, None, None], stem_norm.bias[:, None, None]
    torch.testing.assert_close(stem_norm(x), w * torch.erf(0.7 * x + 0.1) + b)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_transformers_gpt2_and_llama():
    transformers = pytest.importorskip("transformers", reason="transformers is an optional integration")
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
        )
    )
    report = convert_norms(gpt2, "derf")
    assert len(report) == 5 and _count(gpt2, Derf) == 5  # 2 x (ln_1, ln_2) + ln_f
    ids = torch.randint(0, 100, (2, 8))
    gpt2(ids, labels=ids).loss.backward()

    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            num_hidden_layers=2,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=100,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    with torch.no_grad():
        llama.model.norm.weight.uniform_(0.5, 1.5)
    trained = llama.model.norm.weight.clone()
    report = convert_norms(llama, "dyt", copy_affine=True)
    assert len(report) == 5 and report.counts() == {("LlamaRMSNorm", "DyT"): 5}
    torch.testing.assert_close(llama.model.norm.weight, trained)  # weight carried over
    assert torch.all(llama.model.norm.bias == 0)  # RMSNorm had no bias: starts at zero
    assert llama(ids).logits.shape == (2, 8, 100)


def test_batchnorm_groupnorm_instancenorm_untouched():
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.GroupNorm(2, 8), nn.InstanceNorm2d(8), nn.LayerNorm(8)
    )
    before = [type(m) for m in cnn]
    report = convert_norms(cnn, "derf")
    assert len(report) == 1 and [type(m) for m in cnn][:4] == before[:4]
    assert isinstance(cnn[4], Derf)


def test_keeps_dtype_device_requires_grad_and_mode_and_copies_affine():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 6), nn.LayerNorm(6, elementwise_affine=False))
    model = model.double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    model[1].requires_grad_(False)
    model.eval()
    w, b = model[1].weight.clone(), model[1].bias.clone()
    convert_norms(model, "derf", copy_affine=True)
    new, free = model[1], model[3]
    assert new.weight.dtype == torch.float64 and new.alpha.dtype == torch.float64
    assert not any(p.requires_grad for p in new.parameters())
    assert not new.training
    torch.testing.assert_close(new.weight, w)
    torch.testing.assert_close(new.bias, b)
    assert free.weight is None and free.alpha.dtype == torch.float64  # affine-free stays affine-free


def test_include_exclude_and_dry_run():
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    before = copy.deepcopy(model.state_dict())
    dry = convert_norms(model, "derf", dry_run=True)
    assert len(dry) == 25 and _count(model, Derf) == 0 and "would replace" in str(dry)
    assert model.state_dict().keys() == before.keys()
    only_norm1 = convert_norms(model, "derf", include="blocks.*.norm1", exclude=["blocks.0.*"])
    assert len(only_norm1) == 11
    rest = convert_norms(model, RMSNorm, include=lambda name, m: name.endswith("norm2"))
    assert len(rest) == 12 and _count(model, RMSNorm) == 12


def test_bad_target_changes_nothing():
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    with pytest.raises(ValueError, match="Unknown norm 'derff'"):
        convert_norms(model, "derff")
    assert _count(model, nn.LayerNorm) == 25
    with pytest.raises(ValueError, match="alhpa"):
        convert_norms(model, "derf(alhpa=1)")
    assert _count(model, nn.LayerNorm) == 25 and _count(model, DyT) == 0


def test_multi_dimensional_layernorm_is_reported_as_skipped():
    model = nn.Sequential(nn.LayerNorm((4, 4)), nn.LayerNorm(4))
    report = convert_norms(model, "derf")
    assert len(report) == 1 and report.skipped and "not 1-D" in report.skipped[0][1]
