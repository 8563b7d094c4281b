"""The Fréchet distance between two Gaussians fitted to features (FID when the features are Inception's).

``d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``, computed as pytorch-fid (mseitzer/pytorch-fid,
``calculate_frechet_distance``) and torchmetrics (``_compute_fid``) do, in float64. The trace of the matrix square
root uses the symmetric form ``Tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` (the same eigenvalues as ``S1 S2``), from two
symmetric eigendecompositions: no complex parts, and no ``sqrtm`` failure on singular covariances.

Nothing here downloads Inception: :class:`FrechetDistance` takes any feature extractor (the demo uses the released
digits ViT's pre-logit features), so its numbers are comparable only between runs that use the same extractor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from derf_zoo._validate import check_int

__all__ = ["FrechetDistance", "feature_statistics", "frechet_distance"]

ArrayLike = np.ndarray | Tensor


def _as_array(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of ``features`` (N, D), in float64.

    Raises:
        ValueError: not a 2-D array, fewer than 2 samples, or non-finite values.
    """
    f = _as_array(features)
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D array (samples, dims), got shape {f.shape}.")
    if f.shape[0] < 2:
        raise ValueError(f"A covariance needs at least 2 samples, got {f.shape[0]}.")
    if not np.isfinite(f).all():
        raise ValueError("features hold NaN or inf values.")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (the FID formula).

    Raises:
        ValueError: shapes that do not match (means (D,), covariances (D, D)) or non-finite values.
    """
    mu1, mu2 = np.atleast_1d(_as_array(mu1)), np.atleast_1d(_as_array(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_array(sigma1)), np.atleast_2d(_as_array(sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"The means must be vectors of the same length, got shapes {mu1.shape} and {mu2.shape}.")
    d = mu1.shape[0]
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must be ({d}, {d}) to match the means, got {s.shape}.")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("The statistics hold NaN or inf values.")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return max(value, 0.0)  # round-off can leave -1e-12 for identical statistics


class FrechetDistance:
    """The Fréchet distance between two sets of images in the feature space of ``extractor``.

    Args:
        extractor: any module mapping a batch of images (N, ...) to features (N, D) (or (N, D, 1, 1)); it runs in
            eval mode without gradients.
        transform: optional callable applied to each image batch before the extractor (resizing, normalising).
        batch_size: images per extractor call.

    Example: ``FrechetDistance(vit_features)(samples, real_images)`` -> float.
    """

    def __init__(self, extractor: nn.Module, transform: Callable[[Tensor], Tensor] | None = None,
                 batch_size: int = 256) -> None:  # fmt: skip
        check_int("batch_size", batch_size, 1, owner="FrechetDistance", why="images per extractor call")
        self.extractor = extractor
        self.transform = transform
        self.batch_size = int(batch_size)

    @torch.no_grad()
    def features(self, images: Tensor | Iterable[Tensor]) -> np.ndarray:
        """Features (N, D) of ``images``: one tensor (N, ...) or an iterable of batches."""
        batches = images.split(self.batch_size) if isinstance(images, Tensor) else images
        was_training = self.extractor.training
        self.extractor.eval()
        try:
            out = []
            for batch in batches:
                x = self.transform(batch) if self.transform is not None else batch
                f = self.extractor(x)
                out.append(f.reshape(f.shape[0], -1).double().cpu())
        finally:
            self.extractor.train(was_training)
        if not out:
            raise ValueError("No images given.")
        return torch.cat(out).numpy()

    def statistics(self, images: Tensor | Iterable[Tensor]) -> tuple[np.ndarray, np.ndarray]:
        return feature_statistics(self.features(images))

    def __call__(self, images1: Tensor | Iterable[Tensor], images2: Tensor | Iterable[Tensor]) -> float:
        return frechet_distance(*self.statistics(images1), *self.statistics(images2))
