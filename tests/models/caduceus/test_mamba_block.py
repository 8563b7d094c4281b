"""Our Mamba block and BiMamba against the PyPI ``mambapy`` block (same weights), and their own init."""

import math

import pytest
import torch
from mambapy.mamba import MambaBlock, MambaConfig

from derf_zoo.layers import get_mixer
from derf_zoo.models.caduceus.bimamba import BiMamba
from derf_zoo.models.caduceus.mamba import Mamba


def _pair(d_model=12, d_state=4, expand=2, seed=0):
    torch.manual_seed(seed)
    ref = MambaBlock(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state, expand_factor=expand)).double()
    ours = Mamba(d_model, d_state=d_state, expand=expand).double()
    # mambapy uses mamba_simple's parameter names, which are ours too: the state dict loads unchanged.
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("length", [1, 29, 64])
def test_mamba_block_equals_mambapy_forward_and_gradients(length):
    ref, ours = _pair()
    x = torch.randn(2, length, 12, dtype=torch.float64)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(x_ref), ours(x_ours)
    # mambapy casts A and D to float32 (``self.D.float()``) even in a float64 block: ~1e-7 relative differences.
    torch.testing.assert_close(y_ours, y_ref, rtol=1e-6, atol=1e-6)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_ours.backward(g)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-6, atol=1e-6)
    ref_grads = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=1e-5, atol=1e-6)


def test_reference_scan_option_gives_the_same_block():
    _, ours = _pair()
    x = torch.randn(1, 21, 12, dtype=torch.float64)
    y = ours(x)
    ours.scan = "reference"
    torch.testing.assert_close(ours(x), y)


def test_mamba_init_follows_mamba_simple():
    m = Mamba(32, d_state=8, dt_min=1e-3, dt_max=1e-1)
    assert m.dt_rank == math.ceil(32 / 16)
    dt = torch.nn.functional.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    torch.testing.assert_close(m.A_log.detach(), torch.log(torch.arange(1.0, 9.0)).repeat(64, 1))
    torch.testing.assert_close(m.D.detach(), torch.ones(64))
    bound = m.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.conv1d.bias is not None


def test_family_init_leaves_mamba_alone():
    from derf_zoo.layers import init_weights

    # A family default that zeroes everything it touches: the Mamba re-runs its own init instead.
    m = torch.nn.Sequential(Mamba(16, d_state=4))
    init_weights(m, lambda mod: [torch.nn.init.zeros_(p) for p in mod.parameters(recurse=False)])
    mamba = m[0]
    for name, p in mamba.named_parameters():
        assert p.abs().sum() > 0, name
    torch.testing.assert_close(mamba.A_log.detach(), torch.log(torch.arange(1.0, 5.0)).repeat(32, 1))
    assert (torch.nn.functional.softplus(mamba.dt_proj.bias.detach()) >= 1e-3 * 0.999).all()


def test_bad_mamba_arguments_are_named():
    with pytest.raises(ValueError, match="d_state"):
        Mamba(8, d_state=0)
    with pytest.raises(ValueError, match=r"Unknown Mamba scan .*Valid choices:"):
        Mamba(8, scan="fast")
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(8, dt_rank="big")


def test_bimamba_is_forward_plus_flipped_reverse_with_tied_projections():
    torch.manual_seed(0)
    mixer = BiMamba(12, d_state=4).double()
    # The reference (Caduceus' BiMambaWrapper, strategy "add", weight tie): two full Mambas that share in/out
    # projections; build it from mambapy blocks with our weights.
    fwd = MambaBlock(MambaConfig(d_model=12, n_layers=1, d_state=4)).double()
    rev = MambaBlock(MambaConfig(d_model=12, n_layers=1, d_state=4)).double()
    fwd.load_state_dict(mixer.mamba_fwd.state_dict())
    shared = {k: v for k, v in mixer.mamba_fwd.state_dict().items() if k.startswith(("in_proj", "out_proj"))}
    rev.load_state_dict({**mixer.mamba_rev.state_dict(), **shared})
    x = torch.randn(2, 17, 12, dtype=torch.float64)
    expected = fwd(x) + rev(x.flip(1)).flip(1)
    torch.testing.assert_close(mixer(x), expected, rtol=1e-9, atol=1e-9)
    # Tied: the reverse direction has no projections of its own; separate conv / x_proj / dt_proj / A / D.
    assert mixer.mamba_rev.in_proj is None and mixer.mamba_rev.out_proj is None
    assert {k for k, _ in mixer.mamba_rev.named_parameters()} == {"conv1d.weight", "conv1d.bias", "x_proj.weight",
                                                                  "dt_proj.weight", "dt_proj.bias", "A_log", "D"}


def test_bimamba_untied_and_as_registered_mixer():
    untied = BiMamba(8, d_state=2, weight_tie=False)
    assert untied.mamba_rev.in_proj is not None
    x = torch.randn(1, 5, 8)
    torch.testing.assert_close(untied(x), untied.mamba_fwd(x) + untied.mamba_rev(x.flip(1)).flip(1))
    mixer = get_mixer("bimamba(d_state=2, dt_rank=3, chunk_size=4)")(8, 0)
    assert isinstance(mixer, BiMamba) and mixer.mamba_fwd.dt_rank == 3 and mixer.mamba_fwd.chunk_size == 4
    assert mixer(x).shape == x.shape
