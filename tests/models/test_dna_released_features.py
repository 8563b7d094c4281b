"""The released DNA demo backbones must give position-dependent hidden states (else fine-tuning cannot learn).

The first Derf releases failed this: their residual stream grew to ~1e3 during pretraining, the final Derf saturated
(erf = +-1 in every channel), every token got the same features and no gradient passed back, so fine-tuning stayed
at ln 2. The re-releases after issue 18 (embedding std 0.32, final-site alpha 0.1) pass, so the strict expected
failure that marked them is gone; a saturated release would fail here again.
"""

import pytest
import torch

from derf_zoo.models import create_model, list_models

RELEASED = ["hyenadna_nano_ln.ecoli", "hyenadna_nano_derf.ecoli", "caduceus_nano_rmsnorm.ecoli",
            "caduceus_nano_derf.ecoli"]  # fmt: skip


@pytest.mark.parametrize("name", RELEASED)
def test_released_dna_features_vary_over_positions(name):
    if name not in list_models(pretrained=True):
        pytest.skip(f"{name} is not released in this install")
    model = create_model(name, pretrained=True).eval()
    ids = torch.randint(7, 11, (2, 64), generator=torch.Generator().manual_seed(0))  # A, C, G, T
    with torch.no_grad():
        spread = model.forward_features(ids).std(dim=1).mean().item()
    assert spread > 1e-3, f"{name}: hidden states are constant over positions (std {spread:.2e})"


@pytest.mark.parametrize("name", [n for n in RELEASED if "derf" in n])
def test_released_dna_derf_final_site_is_not_saturated(name):
    from derf_zoo.norms.sites import saturation_by_site

    if name not in list_models(pretrained=True):
        pytest.skip(f"{name} is not released in this install")
    model = create_model(name, pretrained=True).eval()
    ids = torch.randint(7, 11, (2, 128), generator=torch.Generator().manual_seed(0))
    by_site = saturation_by_site(model, lambda net: net(ids))
    assert by_site["final"] < 0.5, by_site
