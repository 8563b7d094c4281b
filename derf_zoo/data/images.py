"""Image classification data: an ImageFolder directory or a Hugging Face ``datasets`` dataset, with timm's
transforms (RandAugment, random erasing, bicubic resize, center crop at ``crop_pct``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.constants import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ImageDataModule"]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class _HFImages(Dataset):
    """A ``datasets.Dataset`` with an image column and an integer label column, seen through a transform."""

    def __init__(self, ds: Any, transform: Callable, image_key: str, label_key: str) -> None:
        self.ds, self.transform, self.image_key, self.label_key = ds, transform, image_key, label_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        row = self.ds[i]
        return self.transform(row[self.image_key].convert("RGB")), int(row[self.label_key])


def _check_image_folder(split_dir: Path, split: str, root: Path) -> None:
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"ImageDataModule: {split_dir} does not exist. Expected an ImageFolder layout "
            f"{root}/{{train,val}}/<class_name>/<image files>."
        )
    classes = [d for d in split_dir.iterdir() if d.is_dir()]
    has_images = any(f.suffix.lower() in _IMAGE_EXTENSIONS for c in classes for f in c.iterdir())
    if not classes or not has_images:
        raise FileNotFoundError(
            f"ImageDataModule: the {split} folder {split_dir} has no class folders with images "
            f"({', '.join(_IMAGE_EXTENSIONS)})."
        )


class ImageDataModule(SplitDataModule):
    """ImageNet-style classification data.

    Give either ``root`` (an ImageFolder directory with ``train/`` and ``val/``) or ``dataset`` (a Hugging
    Face dataset name such as ``"imagenet-1k"``, resolved from the local cache when ``HF_HUB_OFFLINE=1``,
    or a local dataset directory).

    Args:
        root: ImageFolder root.
        dataset: Hugging Face dataset name or local path.
        dataset_config: its configuration name, if any.
        train_split / val_split: split names (ImageFolder: folder names ``train`` / ``val``).
        image_key / label_key: column names of a Hugging Face dataset.
        cache_dir: ``datasets`` cache directory.
        img_size: training and evaluation resolution.
        batch_size: per-device batch size.
        num_workers: loader processes (persistent; memory pinned on CUDA).
        auto_augment: timm RandAugment policy (``"rand-m9-mstd0.5-inc1"``), None for none.
        color_jitter: color jitter strength (timm ignores it when RandAugment is on).
        reprob: random-erasing probability; ``remode`` its fill mode.
        interpolation: resize interpolation (``"bicubic"``).
        crop_pct: evaluation center-crop fraction (0.875: resize 256, crop 224).
        scale: RandomResizedCrop scale range.
        hflip: horizontal flip probability.
        mean / std: normalisation.
    """

    def __init__(
        self,
        root: str | None = None,
        dataset: str | None = None,
        dataset_config: str | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        image_key: str = "image",
        label_key: str = "label",
        cache_dir: str | None = None,
        img_size: int = 224,
        batch_size: int = 128,
        num_workers: int = 8,
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        color_jitter: float = 0.4,
        reprob: float = 0.25,
        remode: str = "pixel",
        interpolation: str = "bicubic",
        crop_pct: float = 0.875,
        scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if (root is None) == (dataset is None):
            raise ValueError(
                "ImageDataModule needs exactly one of root= (an ImageFolder directory) or dataset= "
                f"(a Hugging Face dataset); got root={root!r}, dataset={dataset!r}."
            )
        self.save_hyperparameters()
        self.num_classes: int | None = None

    def _transform(self, training: bool) -> Callable:
        from timm.data import create_transform

        h = self.hparams
        return create_transform(
            input_size=h.img_size, is_training=training, auto_augment=h.auto_augment if training else None,
            color_jitter=h.color_jitter, re_prob=h.reprob if training else 0.0, re_mode=h.remode,
            interpolation=h.interpolation, crop_pct=h.crop_pct, scale=tuple(h.scale), hflip=h.hflip,
            mean=tuple(h.mean), std=tuple(h.std),
        )  # fmt: skip

    def _build(self, split: str, training: bool) -> Dataset:
        if self.hparams.root is not None:
            return self._image_folder(split, training)
        return self._hf_dataset(split, training)

    def _image_folder(self, split: str, training: bool) -> Dataset:
        from torchvision.datasets import ImageFolder

        root = Path(self.hparams.root).expanduser()
        folder = {"train": "train", "validation": "val"}.get(split, split)
        _check_image_folder(root / folder, split, root)
        ds = ImageFolder(str(root / folder), transform=self._transform(training))
        self.num_classes = len(ds.classes)
        return ds

    def _hf_dataset(self, split: str, training: bool) -> Dataset:
        import datasets

        h = self.hparams
        try:
            ds = datasets.load_dataset(h.dataset, h.dataset_config, split=split, cache_dir=h.cache_dir)
        except (FileNotFoundError, ConnectionError, ValueError) as err:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            hint = (
                " Offline mode is on: download it on a connected machine first (datasets.load_dataset"
                f"({h.dataset!r}) fills the cache) and point cache_dir= at that cache."
                if offline
                else ""
            )
            raise FileNotFoundError(
                f"ImageDataModule: cannot load split {split!r} of dataset {h.dataset!r}: {err}.{hint}"
            ) from err
        for key in (h.image_key, h.label_key):
            if key not in ds.column_names:
                raise ValueError(
                    f"ImageDataModule: dataset {h.dataset!r} has no column {key!r}; columns: "
                    f"{ds.column_names}. Set image_key=/label_key=."
                )
        label = ds.features[h.label_key]
        self.num_classes = getattr(label, "num_classes", None) or int(max(ds[h.label_key])) + 1
        return _HFImages(ds, self._transform(training), h.image_key, h.label_key)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._build(self.hparams.train_split, training=True)
        if self.val_set is None:
            self.val_set = self._build(self.hparams.val_split, training=False)

    def train_eval_dataset(self) -> Dataset:
        if self.train_eval_set is None:  # built on first use: ImageNet's train split is large
            self.train_eval_set = self._build(self.hparams.train_split, training=False)
        return self.train_eval_set
