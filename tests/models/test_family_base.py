"""The families share one base (ZooModel) and use the backbone as built: no family patches or loops over it."""

import pytest
import torch

from derf_zoo.models._base import ZooModel
from derf_zoo.models.caduceus import Caduceus
from derf_zoo.models.dit import DiT
from derf_zoo.models.gpt2 import GPT2
from derf_zoo.models.hyenadna import HyenaDNA
from derf_zoo.models.vit import VisionTransformer
from derf_zoo.models.wav2vec2 import Wav2Vec2

TINY = {
    "vit": lambda: VisionTransformer(img_size=16, patch_size=8, num_classes=3, embed_dim=16, depth=1, num_heads=2),
    "dit": lambda: DiT(input_size=4, patch_size=2, in_channels=1, hidden_size=16, depth=1, num_heads=2, num_classes=2),
    "wav2vec2": lambda: Wav2Vec2(conv_dim=(8,), conv_kernel=(10,), conv_stride=(5,), embed_dim=16, depth=1,
                                 num_heads=2, ffn_dim=24, pos_conv_kernel=4, pos_conv_groups=2, pretraining=False),
    "hyenadna": lambda: HyenaDNA(d_model=16, n_layer=1, max_seq_len=16),
    "caduceus": lambda: Caduceus(d_model=8, n_layer=1),
    "gpt2": lambda: GPT2(vocab_size=10, n_positions=8, n_embd=16, n_layer=1, n_head=2),
}


@pytest.mark.parametrize("family", sorted(TINY))
def test_every_family_shares_the_base(family):
    model = TINY[family]()
    assert isinstance(model, ZooModel)
    assert tuple(model.norm_specs) == model.norm_sites  # every site resolved once, recorded by the base
    model.set_grad_checkpointing(True)
    assert model.backbone.grad_checkpointing
    model.set_grad_checkpointing(False)
    assert not model.backbone.grad_checkpointing
    expected = {"vit": {"pos_embed", "cls_token"}, "wav2vec2": {"mask_emb"}}.get(family, set())
    assert model.no_weight_decay() == expected


@pytest.mark.parametrize("family", sorted(TINY))
def test_the_backbone_has_only_the_family_sites_it_places(family):
    model = TINY[family]()
    tagged = {m.norm_site for m in model.backbone.modules() if hasattr(m, "norm_site")}
    assert tagged == set(model.backbone.sites) <= set(model.norm_sites) | {"final"}


def test_widths_and_dropouts_reach_the_backbone_as_given():
    w2v = Wav2Vec2(conv_dim=(8,), conv_kernel=(10,), conv_stride=(5,), embed_dim=16, depth=2, num_heads=2, ffn_dim=23,
                   pos_conv_kernel=4, pos_conv_groups=2, pretraining=False, dropout=0.2, activation_dropout=0.05)
    for block in w2v.backbone.blocks:
        assert block.mlp.fc1.out_features == 23 and (block.mlp.drop1.p, block.mlp.drop2.p) == (0.05, 0.2)
    assert HyenaDNA(d_model=16, n_layer=1, d_inner=37, max_seq_len=16).backbone.blocks[0].mlp.fc1.out_features == 37
    assert Caduceus(d_model=8, n_layer=2).backbone.sites == ("attn", "final")


def test_caduceus_ps_swap_goes_through_the_backbone():
    torch.manual_seed(0)
    model = Caduceus(d_model=8, n_layer=2, rcps=True, rcps_swap_halves=True, norm="derf")
    ids = torch.randint(7, 12, (2, 6))
    calls = []
    model.backbone.register_forward_pre_hook(lambda module, args: calls.append(1))
    plain = model(ids)
    assert calls  # forward_features calls the backbone, not a loop of its own over the blocks
    half = model.d_model
    x = model.word_embeddings(ids)
    for block in model.backbone.blocks:  # the fused reference's order, written out
        x = block(torch.cat([x[..., half:], x[..., :half]], dim=-1))
    torch.testing.assert_close(plain, model.forward_head(model.backbone.norm(x)))
    model.set_grad_checkpointing(True)  # now reaches the swapped path too
    torch.testing.assert_close(model(ids), plain)
