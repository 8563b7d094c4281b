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
