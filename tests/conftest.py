"""Test-wide settings: never touch the network, deterministic seeds, quiet Lightning."""

import gc
import os

# Before anything imports huggingface_hub: every Hub call must hit the local cache or fail fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def collect_garbage():
    """For tests that train a full-size model: a Trainer and its LightningModule point at each other, so their
    gigabytes wait for Python's cyclic collector, which runs rarely when few objects are made. Collect now."""
    yield
    gc.collect()


def write_image_folder(root, classes=("cat", "dog", "fox"), per_class=4, size=40, splits=("train", "val")):
    """A tiny ImageFolder of real PNG files (random pixels) under ``root``: ``root/{train,val}/<class>/*.png``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_image_folder(tmp_path / "images")


def write_idx(path, array, gz=True):
    """An unsigned-byte IDX file (big-endian header: magic 0x0000080N, then one uint32 per dimension)."""
    import gzip

    import numpy as np

    array = np.asarray(array, dtype=np.uint8)
    header = np.array([0x800 + array.ndim, *array.shape], dtype=">u4").tobytes()
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_fashion_mnist(root, train_per_class=6, test_per_class=2, gz=True):
    """A tiny Fashion-MNIST folder in the original layout: 28x28 uint8 images whose brightness encodes the class."""
    import numpy as np

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = rng.integers(0, 40, (len(labels), 28, 28)) + 20 * labels[:, None, None]
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz)
    return root


@pytest.fixture
def fmnist_folder(tmp_path):
    return write_fashion_mnist(tmp_path / "fmnist")


@pytest.fixture
def idx_writer():
    """``write_idx`` for tests that build broken Fashion-MNIST files."""
    return write_idx
