"""Fashion-MNIST (Xiao et al., 2017) from its original IDX gzip files: the zoo's real benchmark that fits a CPU.

70,000 28x28 grayscale images of clothing in 10 classes: the standard 60,000 train / 10,000 test split,
plus a validation split carved once from train (stratified, fixed seed), so the test set is only ever
used for the final number. Nothing is downloaded. The files are read from the folder you name, or from
where Debian's ``dataset-fashion-mnist`` package installs them::

    apt-get install dataset-fashion-mnist                 # root: files land in /usr/share/datasets/fashion-mnist
    apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb ~/fmnist   # without root
    # -> root: ~/fmnist/usr/share/datasets/fashion-mnist

or the four ``*-ubyte.gz`` files of https://github.com/zalandoresearch/fashion-mnist in any folder
(uncompressed ``*-ubyte`` files work too). Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat,
5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot. Licence: MIT (Zalando SE).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from derf_zoo._validate import check_choice, check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.constants import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from derf_zoo.data.digits import _Images, stratified_split

__all__ = ["DEBIAN_FASHION_MNIST_DIR", "FashionMNISTDataModule", "find_fashion_mnist", "load_fashion_mnist", "read_idx"]

NUM_CLASSES = 10
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "DERF_ZOO_FASHION_MNIST"  # a folder, used when no root is given
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX magic: two zero bytes, the element type (0x08: unsigned byte), the number of dimensions.
_MAGIC = {3: 0x00000803, 1: 0x00000801}
HOW_TO_GET = (
    "Get the data with `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist), "
    "without root with `apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb DIR` "
    "(then root=DIR/usr/share/datasets/fashion-mnist), or put the four *-ubyte.gz files of "
    "https://github.com/zalandoresearch/fashion-mnist in a folder and pass it as root "
    f"(or set {ENV_VAR})."
)


def read_idx(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX file (gzip or not) as a uint8 array; errors name the file and what is wrong with it."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError; a cut-off stream an EOFError
        raise ValueError(f"{path}: not a complete gzip file ({e}); it may be truncated. {HOW_TO_GET}") from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: {len(raw)} bytes, shorter than an IDX header ({header} bytes). {HOW_TO_GET}")
    magic, *dims = (int(v) for v in np.frombuffer(raw[:header], dtype=">u4"))
    if magic != _MAGIC[ndim]:
        raise ValueError(
            f"{path}: IDX magic number 0x{magic:08x}, expected 0x{_MAGIC[ndim]:08x} (unsigned bytes, {ndim} "
            f"dimension{'s' if ndim > 1 else ''}); this is not a Fashion-MNIST "
            f"{'image' if ndim == 3 else 'label'} file."
        )
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: the header says {'x'.join(map(str, dims))} = {expected} bytes of data but the file has "
            f"{len(raw) - header}; it is truncated or corrupt. {HOW_TO_GET}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get(ENV_VAR)
    return [Path(env).expanduser()] if env else [DEBIAN_FASHION_MNIST_DIR]


def _split_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the four Fashion-MNIST files: ``root``, else ``$DERF_ZOO_FASHION_MNIST``, else Debian's."""
    (folder,) = _candidates(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST: the folder {folder} does not exist. {HOW_TO_GET}")
    missing = [s for pair in _FILES.values() for s in pair if _split_file(folder, s) is None]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST: {folder} lacks {', '.join(m + '.gz' for m in missing)}. {HOW_TO_GET}")
    return folder


def load_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[Tensor, Tensor]:
    """One split (``"train"`` or ``"test"``) as uint8 images (N, 28, 28) and int64 labels (N,)."""
    check_choice("Fashion-MNIST split", split, _FILES)
    folder = find_fashion_mnist(root)
    image_stem, label_stem = _FILES[split]
    image_file, label_file = _split_file(folder, image_stem), _split_file(folder, label_stem)
    images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
    if len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split}: {image_file} holds {len(images)} images but {label_file} holds "
            f"{len(labels)} labels; the files do not belong together. {HOW_TO_GET}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise ValueError(f"{label_file}: label {int(labels.max())} is out of range 0..{NUM_CLASSES - 1}.")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


class FashionMNISTDataModule(SplitDataModule):
    """Fashion-MNIST as a LightningDataModule: train / val (carved from train) / test (the official 10,000).

    Args:
        root: folder with the IDX files; None uses ``$DERF_ZOO_FASHION_MNIST`` or, failing that,
            ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
        val_size: images of the training split held out for validation, stratified (0.1 * 60,000 by default).
        split_seed: seed of that fixed split (keep it to compare runs).
        batch_size: batch size of every loader.
        max_shift: training augmentation, a random translation of up to this many pixels.
        hflip: training augmentation, random horizontal flips (clothes are left-right symmetric).
        num_workers: loader workers; the data is in memory, so 0 is fastest.
        train_size: train on only this many of the remaining training images, a stratified subset fixed by
            ``split_seed`` (the data-limited regime of the generalization study, issue 18); None uses them all.
            Validation and test are unchanged.
    """

    num_classes = NUM_CLASSES

    def __init__(
        self,
        root: str | None = None,
        val_size: int = 6000,
        split_seed: int = 0,
        batch_size: int = 128,
        max_shift: int = 0,
        hflip: bool = False,
        num_workers: int = 0,
        train_size: int | None = None,
    ) -> None:
        super().__init__()
        check_int("val_size", val_size, 1, why="the validation split is carved from train")
        check_int("max_shift", max_shift, 0, why="pixels of random translation")
        check_int("train_size", train_size, 10, why="one image per class", allow_none=True)
        self.save_hyperparameters()
        self.test_set: _Images | None = None

    @staticmethod
    def _normalise(images: Tensor) -> Tensor:
        return ((images.float() / 255.0 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0])[:, None]

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        images, labels = load_fashion_mnist(self.hparams.root, "train")
        if self.hparams.val_size >= len(labels):
            raise ValueError(f"val_size={self.hparams.val_size} leaves no training images out of {len(labels)}.")
        train, val = stratified_split(labels, self.hparams.val_size / len(labels), self.hparams.split_seed)
        if self.hparams.train_size is not None:
            if self.hparams.train_size > len(train):
                raise ValueError(f"train_size={self.hparams.train_size} is more than the {len(train)} training images "
                                 f"left after validation.")  # fmt: skip
            _, chosen = stratified_split(labels[train], self.hparams.train_size / len(train), self.hparams.split_seed)
            train = train[chosen]
        images = self._normalise(images)
        self.train_set = _Images(images[train], labels[train], self.hparams.max_shift, self.hparams.hflip)
        self.train_eval_set = _Images(images[train], labels[train])
        self.val_set = _Images(images[val], labels[val])
        test_images, test_labels = load_fashion_mnist(self.hparams.root, "test")
        self.test_set = _Images(self._normalise(test_images), test_labels)

    def test_dataloader(self):
        """The official 10,000-image test split (validation uses the split carved from train)."""
        return self._loader(self.test_set, shuffle=False)
