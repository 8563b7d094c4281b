"""Caduceus' CaduceusForMaskedLM layouts as declared tables: the round trip key for key, import -> export ->
import, a reference module tree loading the export strictly (identical Caduceus-Ph logits), the registered layouts
equal to from_caduceus, and the refusals."""

import argparse

import pytest
import torch

from derf_zoo.models import create_model, get_family
from derf_zoo.models.caduceus import (
    CADUCEUS_LAYOUT,
    CADUCEUS_LAYOUTS,
    Caduceus,
    caduceus_layout,
    from_caduceus,
    to_caduceus,
)
from derf_zoo.weights import LayoutError, load_layout
from tests.models.caduceus._caduceus_reference import RefCaduceusForMaskedLM

TINY = {"d_model": 8, "n_layer": 2, "d_state": 4}
#: (rcps, fused_add_norm, weight_tie) of each registered layout, for a Caduceus-PS reference where it matters.
VARIANTS = {
    "caduceus": [(False, False, True), (True, False, True)],
    "caduceus_fused_ps": [(True, True, True)],
    "caduceus_untied": [(False, False, False), (True, False, False)],
    "caduceus_untied_fused_ps": [(True, True, False)],
}
CASES = [(name, *v) for name, variants in VARIANTS.items() for v in variants]


def _ref(rcps, fused, tie, seed=0):
    torch.manual_seed(seed)
    ref = RefCaduceusForMaskedLM(**TINY, rcps=rcps, fused_add_norm=fused, weight_tie=tie)
    with torch.no_grad():  # non-trivial values everywhere (the norms' weights too); tied Parameters stay one
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return ref.eval()


def _model_args(fused, tie):
    return {**TINY, **({"bidirectional_weight_tie": False} if not tie else {}),
            **({"rcps_swap_halves": True} if fused else {})}  # fmt: skip


def _assert_same_state(a, b):
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_every_variant_is_registered():
    assert set(VARIANTS) == set(CADUCEUS_LAYOUTS)
    assert get_family("caduceus").layouts == CADUCEUS_LAYOUTS and CADUCEUS_LAYOUTS["caduceus"] is CADUCEUS_LAYOUT


@pytest.mark.parametrize(("name", "rcps", "fused", "tie"), CASES)
def test_the_reference_state_dict_round_trips_every_key_and_tensor(name, rcps, fused, tie):
    sd = _ref(rcps, fused, tie).state_dict()
    layout = CADUCEUS_LAYOUTS[name]
    ours = layout.to_ours(sd)
    assert any("mamba_rev.in_proj" in k for k in ours) != tie  # tied copies are one tensor of ours
    _assert_same_state(layout.to_theirs(ours), sd)


@pytest.mark.parametrize(("name", "rcps", "fused", "tie"), CASES)
def test_import_export_import_is_the_identity_and_the_reference_loads_the_export(name, rcps, fused, tie):
    model = from_caduceus(_ref(rcps, fused, tie).state_dict(), **({"bidirectional_weight_tie": False} if not tie
                                                                    else {}), **TINY)  # fmt: skip
    assert (model.rcps, model.rcps_swap_halves) == (rcps, fused)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    exported = to_caduceus(model)
    again = from_caduceus(exported, **_model_args(fused, tie))
    _assert_same_state(again.state_dict(), model.state_dict())
    assert again.rcps_swap_halves == fused  # the export keeps the layout that says so
    _ref(rcps, fused, tie, seed=1).load_state_dict(exported, strict=True)  # the reference's names and shapes


def test_a_derf_model_round_trips_with_its_own_norm_parameters():
    torch.manual_seed(0)
    model = Caduceus(rcps=True, norm="derf", **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    sd = to_caduceus(model)
    assert "caduceus.backbone.layers.1.norm.submodule.alpha" in sd
    _assert_same_state(from_caduceus(sd, norm="derf", **TINY).state_dict(), model.state_dict())
    fresh = from_caduceus(to_caduceus(Caduceus(rcps=True, **TINY)), norm="derf", **TINY)  # RMSNorm weights
    assert fresh.backbone.blocks[0].norm1.submodule.alpha.item() == 0.5  # a fresh Derf site


def test_caduceus_ph_gives_the_reference_logits_both_ways():
    ref = _ref(False, False, True).double()
    ours = from_caduceus(ref.state_dict(), **TINY).double().eval()
    ids = torch.randint(0, 12, (2, 23), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # mambapy computes A and D in float32 even in float64: ~1e-7 relative differences
        torch.testing.assert_close(ours(ids), ref(ids), rtol=1e-6, atol=1e-6)
        for p in ours.parameters():
            p.mul_(1.1)
        back = _ref(False, False, True, seed=1).double()
        back.load_state_dict(to_caduceus(ours), strict=True)
        torch.testing.assert_close(back(ids), ours(ids), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "rcps", "fused", "tie"), CASES)
def test_the_registered_layout_loads_what_from_caduceus_loads(name, rcps, fused, tie):
    sd = _ref(rcps, fused, tie).state_dict()
    imported = from_caduceus(sd, **_model_args(fused, tie)).eval()
    entry = create_model("caduceus_ps_1k" if rcps else "caduceus_ph_1k", **_model_args(fused, tie)).eval()
    load_layout(entry, sd, get_family("caduceus").layout(name), source="the reference's weights")
    _assert_same_state(entry.state_dict(), imported.state_dict())
    ids = torch.randint(0, 12, (1, 17), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(entry(ids), imported(ids), rtol=0, atol=0)


def test_bad_input_is_refused_by_name():
    sd = _ref(False, False, True).state_dict()
    with pytest.raises(LayoutError, match=r"caduceus\.backbone\.extra\.weight"):
        CADUCEUS_LAYOUT.to_ours({**sd, "caduceus.backbone.extra.weight": torch.zeros(1)})
    with pytest.raises(LayoutError, match=r"'lm_head\.weight' should be tied"):
        from_caduceus({**sd, "lm_head.weight": sd["lm_head.weight"] + 1}, **TINY)
    fused = _ref(True, True, True).state_dict()
    norm = "caduceus.backbone.layers.0.norm."
    both = {**fused, norm + "submodule.weight": fused[norm + "weight"]}  # the fused and the non-fused name
    with pytest.raises(LayoutError, match=r"both map onto 'backbone\.blocks\.0\.norm1\.submodule\.weight'"):
        caduceus_layout(fused_ps=True).to_ours(both)
    with pytest.raises(ValueError, match=r"weight layout for the caduceus family.*'caduceus_hf'.*caduceus_fused_ps"):
        get_family("caduceus").layout("caduceus_hf")


def test_a_file_loads_what_its_state_dict_loads(tmp_path):
    sd = _ref(True, False, True).state_dict()
    torch.save({"model": sd, "args": argparse.Namespace(lr=1e-3)}, tmp_path / "checkpoint.pt")
    _assert_same_state(from_caduceus(tmp_path / "checkpoint.pt", **TINY).state_dict(),
                       from_caduceus(sd, **TINY).state_dict())
