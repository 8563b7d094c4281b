import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from derf_zoo.diffusion.fid import FrechetDistance, feature_statistics, frechet_distance


def _scipy_fid(mu1, s1, mu2, s2):
    """pytorch-fid's calculate_frechet_distance, directly."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _gaussians(seed=0, n=400, d=6):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.5
    return a, b


def test_matches_scipy_sqrtm():
    a, b = _gaussians()
    ours = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(_scipy_fid(*feature_statistics(a), *feature_statistics(b)), rel=1e-8)
    assert ours > 0


def test_identical_sets_give_zero_and_symmetry():
    a, b = _gaussians(1)
    assert frechet_distance(*feature_statistics(a), *feature_statistics(a)) == pytest.approx(0.0, abs=1e-8)
    ab = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    ba = frechet_distance(*feature_statistics(b), *feature_statistics(a))
    assert ab == pytest.approx(ba, rel=1e-9)


def test_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()  # 1+4 + 4+1+0 = 10
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(10.0)


def test_singular_covariance_and_torch_inputs():
    x = torch.randn(5, 8, dtype=torch.float64)  # 5 samples in 8 dims: rank-deficient covariances
    y = torch.randn(5, 8, dtype=torch.float64)
    value = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert np.isfinite(value) and value >= 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"sigma2 must be \(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="No images"):
        FrechetDistance(nn.Flatten())([], torch.zeros(3, 4))


def test_helper_with_any_extractor():
    torch.manual_seed(0)
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    a, b = torch.rand(64, 1, 4, 4), torch.rand(64, 1, 4, 4) * 0.5
    fd = FrechetDistance(extractor, transform=lambda x: 2 * x - 1, batch_size=10)
    fa, fb = fd.features(a), fd.features(b)
    assert fa.shape == (64, 5)
    assert fd(a, b) == pytest.approx(frechet_distance(*feature_statistics(fa), *feature_statistics(fb)))
    assert fd(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fd(list(a.split(7)), b) == pytest.approx(fd(a, b))  # an iterable of batches works too


def test_agrees_with_torchmetrics_custom_feature():
    """torchmetrics' FrechetInceptionDistance takes a custom ``feature`` module: same features, same value."""
    fid_mod = pytest.importorskip("torchmetrics.image.fid")

    class Features(nn.Module):
        num_features = 6

        def forward(self, x):
            return x.double()

    a, b = _gaussians(2, n=300, d=6)
    metric = fid_mod.FrechetInceptionDistance(feature=Features(), normalize=True)
    metric.update(torch.from_numpy(a), real=True)
    metric.update(torch.from_numpy(b), real=False)
    theirs = float(metric.compute())
    ours = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert ours == pytest.approx(theirs, rel=1e-5)
