"""scikit-learn's handwritten digits, embedded in the package: a real (if small) image benchmark offline.

1,797 real 8x8 grayscale digits (UCI "Optical Recognition of Handwritten Digits", CC BY 4.0, as shipped
by scikit-learn; written by scripts/make_digits_asset.py), scaled to [0, 1], upsampled to ``img_size``
(bilinear) and split train/val once, stratified, with a fixed seed: every run and every machine sees the
same 1,437 / 360 images. There is no separate test split; ``test`` evaluates the val split.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from derf_zoo._validate import check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.constants import DIGITS_MEAN, DIGITS_STD

__all__ = ["DigitsDataModule", "load_digits"]

NUM_CLASSES = 10


def load_digits() -> tuple[Tensor, Tensor]:
    """All 1,797 digits as float images (N, 1, 8, 8) in [0, 1] and int64 labels (N,)."""
    with resources.files("derf_zoo.data").joinpath("assets/digits.npz").open("rb") as f:
        data = np.load(f)
        images, labels = data["images"], data["labels"]
    return torch.from_numpy(images.astype(np.float32) / 16.0)[:, None], torch.from_numpy(labels.astype(np.int64))


def stratified_split(labels: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, val): ``val_fraction`` of every class in val, chosen by a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in labels.unique(sorted=True):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = round(len(idx) * val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


class _Images(Dataset):
    """In-memory normalised images with an optional random shift (small translations keep digits legible) and
    an optional random horizontal flip (for data that is left-right symmetric, such as clothes; never digits)."""

    def __init__(self, images: Tensor, labels: Tensor, max_shift: int = 0, hflip: bool = False) -> None:
        self.images, self.labels, self.max_shift, self.hflip = images, labels, max_shift, hflip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.images[i]
        if self.max_shift:
            s = self.max_shift
            dy, dx = torch.randint(-s, s + 1, (2,)).tolist()
            x = F.pad(x, (s, s, s, s), value=float(x.min()))[
                :, s + dy : s + dy + x.shape[1], s + dx : s + dx + x.shape[2]
            ]
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


class DigitsDataModule(SplitDataModule):
    """The embedded digits as a LightningDataModule.

    Args:
        img_size: side the 8x8 images are upsampled to (bilinear).
        val_fraction: share of each class held out for validation.
        split_seed: seed of the fixed split (keep it to compare runs).
        batch_size: batch size of every loader.
        max_shift: training augmentation, a random translation of up to this many pixels (at ``img_size``).
        num_workers: loader workers; the data is in memory, so 0 is fastest.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        img_size: int = 16,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        batch_size: int = 64,
        max_shift: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
        check_int("img_size", img_size, 8, why="the digits are 8x8")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_digits()
        images = F.interpolate(images, size=self.hparams.img_size, mode="bilinear", align_corners=False)
        images = (images - DIGITS_MEAN[0]) / DIGITS_STD[0]
        train, val = stratified_split(labels, self.hparams.val_fraction, self.hparams.split_seed)
        self.train_set = _Images(images[train], labels[train], self.hparams.max_shift)
        self.train_eval_set = _Images(images[train], labels[train])
        self.val_set = _Images(images[val], labels[val])
