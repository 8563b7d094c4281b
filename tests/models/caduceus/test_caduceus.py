"""Caduceus-Ph and -PS: block structure against the reference's formulation, RC equivariance, the HF layout."""

import pytest
import torch
import torch.nn.functional as F

from derf_zoo.data.dna import reverse_complement_ids
from derf_zoo.models import create_model
from derf_zoo.models.caduceus import (
    CADUCEUS_LAYOUT,
    DNA_COMPLEMENT,
    Caduceus,
    dna_complement_map,
    from_caduceus,
    rcps,
    to_caduceus,
)
from derf_zoo.models.caduceus.rcps import RCPSWrapper
from derf_zoo.norms.layers import Derf, RMSNorm
from derf_zoo.weights import LayoutError
from derf_zoo.weights.state_dict import WeightsMismatchError

TINY = {"d_model": 8, "n_layer": 2, "d_state": 4, "expand": 2}


def _ids(batch=2, length=23, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 12, (batch, length), generator=g)


def _perturb(model):
    """Random norm weights/biases and alphas, so that a test would see a half or a channel put in the wrong place."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("norm", ["rmsnorm", "derf"])
def test_caduceus_ps_is_reverse_complement_equivariant(norm):
    model = _perturb(Caduceus(rcps=True, norm=norm, **TINY)).double().eval()
    ids = _ids()
    cmap = dna_complement_map(model.padded_vocab_size)
    logits = model(ids)
    logits_rc = model(reverse_complement_ids(ids))
    torch.testing.assert_close(logits_rc, logits.flip(1)[..., cmap], rtol=1e-10, atol=1e-10)


def test_caduceus_ph_is_not_equivariant_but_its_rc_average_is():
    model = Caduceus(rcps=False, **TINY).double().eval()
    ids = _ids()
    cmap = dna_complement_map(model.padded_vocab_size)
    rc = reverse_complement_ids(ids)
    assert not torch.allclose(model(rc), model(ids).flip(1)[..., cmap], atol=1e-6)
    model.rc_average = True
    torch.testing.assert_close(model(rc), model(ids).flip(1)[..., cmap], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(ids), model.rc_averaged_logits(ids))
    model.train()
    assert not torch.allclose(model(ids), model.rc_averaged_logits(ids))  # averaging is for inference only


def _reference_ph_logits(model, ids):
    """CaduceusForMaskedLM, non-fused: Block = Add -> RMSNorm -> BiMamba, then Add -> norm_f, tied head."""
    hidden, residual = model.word_embeddings(ids), None
    for block in model.backbone.blocks:
        residual = hidden + residual if residual is not None else hidden
        hidden = block.mixer(F.rms_norm(residual, (model.d_model,), block.norm1.weight, 1e-5))
    residual = hidden + residual
    hidden = F.rms_norm(residual, (model.d_model,), model.backbone.norm.weight, 1e-5)
    return hidden @ model.word_embeddings.weight.T


def _reference_ps_fused_logits(model, ids):
    """The reference's RCPSMambaBlock with fused_add_norm=True (rms_norm_fn on swapped halves), written out."""
    d = model.d_model

    def rms(x, w):
        return F.rms_norm(x, (d,), w, 1e-5)

    hidden, residual = model.word_embeddings(ids), None
    for block in model.backbone.blocks:
        w = block.norm1.submodule.weight
        s = hidden if residual is None else hidden + residual
        fwd_res, rc_res = s[..., d:], s[..., :d].flip(dims=[-2, -1])  # as in the reference: fwd from the 2nd half
        hidden = torch.cat([rms(fwd_res, w), rms(rc_res, w).flip(dims=[-2, -1])], dim=-1)
        residual = torch.cat([fwd_res, rc_res.flip(dims=[-2, -1])], dim=-1)
        hidden = block.mixer(hidden)
    s = hidden + residual
    w = model.backbone.norm.submodule.weight
    hidden = torch.cat([rms(s[..., :d], w), rms(s[..., d:].flip(dims=[-2, -1]), w).flip(dims=[-2, -1])], dim=-1)
    emb = model.word_embeddings.weight
    return hidden[..., :d] @ emb.T + hidden[..., d:].flip(-1) @ emb[model.complement_map].T


def test_caduceus_ph_equals_the_reference_add_norm_mixer_formulation():
    model = _perturb(Caduceus(**TINY)).double()
    ids = _ids()
    torch.testing.assert_close(model(ids), _reference_ph_logits(model, ids), rtol=1e-10, atol=1e-10)


def test_caduceus_ps_swap_halves_equals_the_reference_fused_block():
    model = _perturb(Caduceus(rcps=True, rcps_swap_halves=True, **TINY)).double()
    ids = _ids()
    torch.testing.assert_close(model(ids), _reference_ps_fused_logits(model, ids), rtol=1e-10, atol=1e-10)
    cmap = model.complement_map  # still equivariant: swapping halves commutes with the RC flip
    torch.testing.assert_close(model(reverse_complement_ids(ids)), model(ids).flip(1)[..., cmap])


@pytest.mark.parametrize("rcps", [False, True])
def test_hf_layout_round_trips_to_identical_logits(rcps):
    model = _perturb(Caduceus(rcps=rcps, norm="derf", **TINY))
    sd = to_caduceus(model)
    # The reference's names (kuleshov-group/caduceus CaduceusForMaskedLM), tied copies written out.
    prefix = "caduceus.backbone.layers.0.mixer." + ("submodule." if rcps else "")
    assert prefix + "mamba_rev.in_proj.weight" in sd and prefix + "mamba_fwd.A_log" in sd
    assert ("lm_head.lm_head.weight" if rcps else "lm_head.weight") in sd
    assert ("caduceus.backbone.norm_f.submodule.weight" if rcps else "caduceus.backbone.norm_f.weight") in sd
    loaded = from_caduceus(sd, norm="derf", **TINY)
    assert loaded.rcps == rcps and not loaded.rcps_swap_halves
    ids = _ids()
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)
    # The family's layout (for released weights in this layout) covers every key.
    assert set(CADUCEUS_LAYOUT.to_ours(sd)) == set(model.state_dict())


def test_fused_ps_layout_loads_with_swapped_halves():
    model = _perturb(Caduceus(rcps=True, **TINY))
    sd = {k.replace(".norm.submodule.", ".norm.").replace("norm_f.submodule.", "norm_f."): v
          for k, v in to_caduceus(model).items()}  # fmt: skip
    loaded = from_caduceus(sd, **TINY)
    assert loaded.rcps_swap_halves
    norm_weight = model.backbone.blocks[1].norm1.submodule.weight
    torch.testing.assert_close(loaded.backbone.blocks[1].norm1.submodule.weight, norm_weight)


def test_import_errors_list_missing_and_extra_keys():
    sd = to_caduceus(Caduceus(**TINY))
    del sd["caduceus.backbone.layers.1.mixer.mamba_rev.A_log"]
    sd["caduceus.backbone.layers.1.mixer.extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsMismatchError, match=r"(?s)missing keys: .*mamba_rev\.A_log.*unexpected keys: .*extra"):
        from_caduceus(sd, **TINY)
    sd = to_caduceus(Caduceus(**TINY))
    sd["caduceus.backbone.layers.0.mixer.mamba_rev.in_proj.weight"] = torch.zeros_like(
        sd["caduceus.backbone.layers.0.mixer.mamba_rev.in_proj.weight"])
    with pytest.raises(LayoutError, match=r"mamba_rev\.in_proj\.weight' should be tied to .*mamba_fwd\.in_proj"):
        from_caduceus(sd, **TINY)


def test_norm_slot_derf_with_bias_in_every_site_and_per_site_specs():
    model = Caduceus(rcps=True, norm="derf", **TINY)
    derfs = [m for m in model.modules() if isinstance(m, Derf)]
    assert len(derfs) == TINY["n_layer"] + 1 and all(m.bias is not None and m.alpha.item() == 0.5 for m in derfs)
    assert not any(isinstance(m, RMSNorm) for m in model.modules())
    assert {m.norm_site for m in derfs} == {"attn", "final"}
    mixed = Caduceus(norm={"attn": "derf", "final": "rmsnorm(eps=1e-5)"}, **TINY)
    assert isinstance(mixed.backbone.norm, RMSNorm) and isinstance(mixed.backbone.blocks[0].norm1, Derf)
    assert not hasattr(mixed.backbone.blocks[0], "norm2")  # blocks without an MLP
    with pytest.raises(ValueError, match="norm site"):
        Caduceus(norm={"mlp": "derf", "default": "rmsnorm"}, **TINY)


def test_entry_points_sizes_and_bad_input():
    ph, ps = create_model("caduceus_ph_1k_rmsnorm"), create_model("caduceus_ps_1k_derf")
    # caduceus-{ph,ps}_seqlen-1k_d_model-118_n_layer-4: ~470k parameters each (PS shares them over two halves).
    for m in (ph, ps):
        assert m.d_model == 118 and m.n_layer == 4 and m.padded_vocab_size == 16
        assert 460_000 < sum(p.numel() for p in m.parameters()) < 480_000
    assert ph.num_features == 118 and ps.num_features == 236
    ids = _ids(1, 16)
    assert ps.forward_features(ids).shape == (1, 16, 236) and ps(ids).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="width must be even; got width 7"):
        RCPSWrapper(torch.nn.Identity())(torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="d_model"):
        Caduceus(d_model=0)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        ph(torch.zeros(2, 3, 4, dtype=torch.long))
    assert tuple(dna_complement_map(16)[: len(DNA_COMPLEMENT)].tolist()) == DNA_COMPLEMENT


@pytest.mark.parametrize("weight_tie", [True, False])
def test_out_proj_scaled_and_embedding_init(weight_tie):
    model = Caduceus(**{**TINY, "n_layer": 4, "d_model": 64, "bidirectional_weight_tie": weight_tie})
    assert abs(model.word_embeddings.weight.std().item() - 0.02) < 0.005
    mixer = model.backbone.blocks[0].mixer
    out_projs = [mixer.mamba_fwd.out_proj] + ([] if weight_tie else [mixer.mamba_rev.out_proj])
    assert weight_tie == (mixer.mamba_rev.out_proj is None)
    for proj in out_projs:  # the reference rescales every out_proj.weight, the reverse direction's too
        w = proj.weight
        bound = (1 / w.shape[1]) ** 0.5 / 4**0.5  # kaiming-uniform(a=sqrt 5) bound 1/sqrt(fan_in), over sqrt(n_layer)
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound


def test_save_pretrained_round_trip(tmp_path):
    from derf_zoo.models import from_pretrained

    model = _perturb(create_model("caduceus_ps_1k_derf", **TINY)).eval()
    model.save_pretrained(tmp_path / "ps")
    loaded = from_pretrained(tmp_path / "ps").eval()
    ids = _ids()
    assert isinstance(loaded, Caduceus) and loaded.rcps
    torch.testing.assert_close(loaded(ids), model(ids), rtol=0, atol=0)


def test_one_public_reverse_complement_ids():
    """The data module's ``reverse_complement_ids(ids, pad_id=None)`` is the public one; the RCPS layers' helper,
    which takes the model's padded complement map, is private and agrees with it on the tokenizer's ids."""
    assert not hasattr(rcps, "reverse_complement_ids") and "reverse_complement_ids" not in rcps.__all__
    ids = _ids()
    mapped = rcps._reverse_complement_with_map(ids, dna_complement_map(16))
    torch.testing.assert_close(mapped, reverse_complement_ids(ids))
