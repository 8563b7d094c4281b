"""HyenaDNA's public layout as a declared table: the round trip key for key, import -> export -> import, the
reference loading the export strictly, the registered layout equal to from_hyenadna, and the refusals."""

import argparse

import pytest
import torch

from derf_zoo.models import create_model, get_family
from derf_zoo.models.hyenadna import (
    HYENADNA_CHECKPOINTED_LAYOUT,
    HYENADNA_LAYOUT,
    HyenaDNA,
    from_hyenadna,
    hyenadna_layout,
    to_hyenadna,
)
from derf_zoo.weights import LayoutError, load_layout
from tests.models.hyenadna._hyenadna_reference import RefHyenaDNALM


def _ref(order=2, seed=0):
    torch.manual_seed(seed)
    return RefHyenaDNALM(d_model=16, n_layer=2, l_max=40, order=order, filter_order=8).eval()


def _ids(length=37):
    return torch.randint(0, 12, (2, length), generator=torch.Generator().manual_seed(3))


def _assert_same_state(a, b):
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(("order", "prefix"), [(2, ""), (2, "model."), (3, "hyena.")])
def test_the_public_layout_round_trips_every_key_and_tensor(order, prefix):
    sd = _ref(order).state_dict()
    ours = HYENADNA_LAYOUT.to_ours({prefix + k: v for k, v in sd.items()})
    assert "embeddings.weight" in ours and "backbone.blocks.1.mixer.filter_fn.sin.freq" in ours
    assert not any("freq" in k and "sin" not in k for k in ours)  # the shared sine's copies are one tensor
    _assert_same_state(HYENADNA_LAYOUT.to_theirs(ours), sd)  # lm_head and the .3/.5 freq copies written back


def test_the_checkpointed_naming_round_trips_through_its_own_layout():
    sd = {k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer."): v
          for k, v in _ref().state_dict().items()}  # fmt: skip
    ours = HYENADNA_CHECKPOINTED_LAYOUT.to_ours(sd)
    assert set(ours) == set(HYENADNA_LAYOUT.to_ours(_ref().state_dict()))
    _assert_same_state(HYENADNA_CHECKPOINTED_LAYOUT.to_theirs(ours), sd)
    assert get_family("hyenadna").layout("hyenadna_checkpointed") is HYENADNA_CHECKPOINTED_LAYOUT


@pytest.mark.parametrize("norm", ["layernorm", "derf"])
def test_import_export_import_is_the_identity(norm):
    model = from_hyenadna(_ref().state_dict(), norm=norm)
    with torch.no_grad():
        for p in model.parameters():  # the fresh Derf sites too, so that each is seen to come back
            p.add_(0.1 * torch.randn_like(p))
    again = from_hyenadna(to_hyenadna(model), norm=norm)
    _assert_same_state(again.state_dict(), model.state_dict())


def test_a_filter_mlp_of_another_depth_round_trips_too():
    torch.manual_seed(0)
    model = HyenaDNA(d_model=16, n_layer=1, max_seq_len=24, mixer="hyena(filter_order=8, num_inner_mlps=3)",
                     embed_dropout=0.0).eval()  # fmt: skip
    sd = to_hyenadna(model)
    assert {k.rsplit(".", 2)[-2] for k in sd if k.endswith(".freq")} == {"1", "3", "5", "7"}
    again = from_hyenadna(sd, embed_dropout=0.0).eval()
    _assert_same_state(again.state_dict(), model.state_dict())
    assert hyenadna_layout(3).to_theirs(model.state_dict()).keys() == sd.keys()


@pytest.mark.parametrize("order", [2, 3])
def test_the_reference_loads_the_export_strictly_with_identical_logits(order):
    ours = from_hyenadna(_ref(order).state_dict(), embed_dropout=0.0).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = _ref(order, seed=1)
    ref.load_state_dict(to_hyenadna(ours), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ref(_ids()), ours(_ids()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix", ["", "model."])
def test_the_registered_layout_loads_what_from_hyenadna_loads(prefix):
    sd = {prefix + k: v for k, v in _ref().state_dict().items()}
    imported = from_hyenadna(sd, embed_dropout=0.0).eval()
    entry = create_model("hyenadna_tiny_1k", d_model=16, max_seq_len=40, mixer="hyena(filter_order=8)",
                         embed_dropout=0.0).eval()  # fmt: skip
    load_layout(entry, sd, get_family("hyenadna").layout("hyenadna"), source="the reference's weights")
    _assert_same_state(entry.state_dict(), imported.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(entry(_ids()), imported(_ids()), rtol=0, atol=0)


def test_bad_input_is_refused_by_name():
    sd = _ref().state_dict()
    with pytest.raises(LayoutError, match=r"backbone\.layers\.0\.extra\.weight"):
        HYENADNA_LAYOUT.to_ours({**sd, "backbone.layers.0.extra.weight": torch.zeros(1)})
    with pytest.raises(LayoutError, match=r"backbone\.ln_f\.bias"):  # one tensor twice, under two prefixes
        HYENADNA_LAYOUT.to_ours({**sd, "model.backbone.ln_f.bias": sd["backbone.ln_f.bias"]})
    with pytest.raises(LayoutError, match=r"implicit_filter\.3\.freq"):
        HYENADNA_LAYOUT.to_ours({**sd, "backbone.layers.1.mixer.filter_fn.implicit_filter.3.freq": torch.zeros(1, 8)})
    with pytest.raises(ValueError, match=r"weight layout for the hyenadna family.*'hyenadna_hf'.*hyenadna"):
        get_family("hyenadna").layout("hyenadna_hf")
    with pytest.raises(ValueError, match="does not look like a HyenaDNA state dict"):
        from_hyenadna({"backbone.ln_f.weight": torch.ones(16)})
    attention = HyenaDNA(d_model=16, n_layer=1, max_seq_len=8, mixer="attention(num_heads=2)")
    with pytest.raises(ValueError, match="mixer is Attention"):
        to_hyenadna(attention)


@pytest.mark.parametrize("form", ["state_dict", "training_checkpoint"])
def test_a_file_loads_what_its_state_dict_loads(tmp_path, form):
    sd = _ref().state_dict()
    path = tmp_path / "weights.pt"
    torch.save(sd if form == "state_dict" else {"model": sd, "args": argparse.Namespace(lr=1e-3)}, path)
    _assert_same_state(from_hyenadna(path).state_dict(), from_hyenadna(sd).state_dict())
    _assert_same_state(from_hyenadna(str(path)).state_dict(), from_hyenadna(sd).state_dict())
    with pytest.raises(FileNotFoundError, match=r"from_hyenadna: no weights file at .*missing\.pt"):
        from_hyenadna(str(tmp_path / "missing.pt"))
