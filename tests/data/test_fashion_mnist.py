"""Fashion-MNIST from its IDX files: the splits, and errors that say where the module looked and how to get the data."""

import gzip

import numpy as np
import pytest
import torch

from derf_zoo.data import FashionMNISTDataModule, load_fashion_mnist
from derf_zoo.data.fashion_mnist import DEBIAN_FASHION_MNIST_DIR, find_fashion_mnist, read_idx


def test_reads_the_standard_splits_and_carves_a_stratified_val(fmnist_folder):
    images, labels = load_fashion_mnist(fmnist_folder, "train")
    assert images.shape == (60, 28, 28) and images.dtype == torch.uint8 and labels.tolist()[:3] == [0, 1, 2]
    dm = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, batch_size=8)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 20, 20)
    assert torch.bincount(dm.val_set.labels).tolist() == [2] * 10  # stratified: 2 of every class
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(dm.test_set.labels, load_fashion_mnist(fmnist_folder, "test")[1])  # test = t10k, not val
    assert len(dm.train_eval_dataloader().dataset) == 40


def test_the_split_is_fixed_by_its_seed(fmnist_folder):
    def val_images(seed):
        dm = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, split_seed=seed)
        dm.setup()
        return dm.val_set.images

    assert torch.equal(val_images(0), val_images(0)) and not torch.equal(val_images(0), val_images(1))


def test_uncompressed_files_and_the_environment_variable(fmnist_folder, tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    plain.mkdir()
    for gz in fmnist_folder.glob("*.gz"):
        (plain / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    monkeypatch.setenv("DERF_ZOO_FASHION_MNIST", str(plain))
    assert find_fashion_mnist() == plain
    images, labels = load_fashion_mnist(None, "test")
    assert torch.equal(labels, load_fashion_mnist(fmnist_folder, "test")[1]) and images.shape == (20, 28, 28)


def test_augmentation_flips_and_shifts_only_the_training_set(fmnist_folder):
    dm = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, hflip=True, max_shift=2)
    dm.setup()
    assert dm.train_set.hflip and dm.train_set.max_shift == 2
    assert not dm.train_eval_set.hflip and dm.train_eval_set.max_shift == 0 and not dm.test_set.hflip
    torch.manual_seed(0)
    flipped = {tuple(dm.train_set[0][0].flatten()[:28].tolist()) for _ in range(20)}
    assert len(flipped) > 1


def test_missing_folder_says_where_it_looked_and_how_to_get_the_data(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist") as exc:
        FashionMNISTDataModule(root=str(tmp_path / "nowhere")).setup()
    assert str(tmp_path / "nowhere") in str(exc.value) and "apt-get download dataset-fashion-mnist" in str(exc.value)
    monkeypatch.delenv("DERF_ZOO_FASHION_MNIST", raising=False)
    monkeypatch.setattr("derf_zoo.data.fashion_mnist.DEBIAN_FASHION_MNIST_DIR", tmp_path / "no_debian")
    with pytest.raises(FileNotFoundError, match="no_debian"):
        find_fashion_mnist()
    assert str(DEBIAN_FASHION_MNIST_DIR) == "/usr/share/datasets/fashion-mnist"


def test_missing_file_is_named(fmnist_folder):
    (fmnist_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_fashion_mnist(fmnist_folder, "train")


def test_truncated_gzip(fmnist_folder):
    path = fmnist_folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated") as exc:
        load_fashion_mnist(fmnist_folder, "train")
    assert str(path) in str(exc.value)


def test_body_shorter_than_the_header_says(fmnist_folder):
    path = fmnist_folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-28]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_fashion_mnist(fmnist_folder, "train")


def test_wrong_magic(fmnist_folder, idx_writer):
    # a label file where the images should be: 1 dimension, not 3
    idx_writer(fmnist_folder / "train-images-idx3-ubyte.gz", np.zeros(60))
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        load_fashion_mnist(fmnist_folder, "train")


def test_image_and_label_counts_must_agree(fmnist_folder, idx_writer):
    idx_writer(fmnist_folder / "train-labels-idx1-ubyte.gz", np.zeros(59))
    with pytest.raises(ValueError, match=r"60 images but .* 59 labels"):
        load_fashion_mnist(fmnist_folder, "train")


def test_bad_arguments():
    with pytest.raises(ValueError, match="val_size"):
        FashionMNISTDataModule(val_size=0)
    with pytest.raises(ValueError, match=r"Unknown Fashion-MNIST split 'val'.*Valid choices: test, train"):
        load_fashion_mnist(None, "val")


def test_read_idx_header_only(tmp_path, idx_writer):
    path = idx_writer(tmp_path / "x.gz", np.zeros((0, 28, 28)))
    assert read_idx(path, 3).shape == (0, 28, 28)
    (tmp_path / "short").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="shorter than an IDX header"):
        read_idx(tmp_path / "short", 3)
