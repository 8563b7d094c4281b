"""Image-generation data: the embedded handwritten digits in pixel space, scaled to [-1, 1], with their labels.

The same 1,797 real 8x8 digits and the same fixed stratified split as :mod:`derf_zoo.data.digits` (about 80 / 20 per
class), for class-conditional diffusion: a pixel-space stand-in for DiT's ImageNet latents that trains in
minutes on a CPU. Diffusion wants data in [-1, 1] (the sampler clips its x0 predictions there), so the images
are ``2 * x - 1`` rather than mean/std normalised. No augmentation: a flipped digit is another glyph.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from derf_zoo._validate import check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.digits import NUM_CLASSES, load_digits, stratified_split

__all__ = ["DigitsGenerationDataModule", "to_pixels"]


def to_pixels(x: Tensor) -> Tensor:
    """Model space [-1, 1] back to [0, 1] (for pictures)."""
    return ((x + 1) / 2).clamp(0, 1)


class _Pairs(Dataset):
    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.images[i], self.labels[i]


class DigitsGenerationDataModule(SplitDataModule):
    """The embedded digits for class-conditional generation: batches of (images in [-1, 1], labels).

    Args:
        img_size: side (8: the digits as they are; larger sides are bilinear upsamplings).
        val_fraction: share of each class held out (the classification split's default, so the same images).
        split_seed: seed of the fixed split.
        batch_size: batch size of every loader.
        num_workers: loader workers (the data is in memory: 0 is fastest).
    """

    num_classes = NUM_CLASSES

    def __init__(self, img_size: int = 8, val_fraction: float = 0.2, split_seed: int = 0, batch_size: int = 64,
                 num_workers: int = 0) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
        check_int("img_size", img_size, 8, why="the digits are 8x8")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_digits()
        if self.hparams.img_size != 8:
            images = F.interpolate(images, size=self.hparams.img_size, mode="bilinear", align_corners=False)
        images = images * 2 - 1
        train, val = stratified_split(labels, self.hparams.val_fraction, self.hparams.split_seed)
        self.train_set = self.train_eval_set = _Pairs(images[train], labels[train])
        self.val_set = _Pairs(images[val], labels[val])
