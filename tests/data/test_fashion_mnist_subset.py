"""Fashion-MNIST's train_size: a fixed, stratified subset of the training images (issue 18's data-limited regime)."""

import pytest
import torch

from derf_zoo.data import FashionMNISTDataModule


def test_train_size_keeps_a_stratified_subset_and_leaves_val_and_test(fmnist_folder):
    full = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20)
    full.setup()
    dm = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, train_size=20)
    dm.setup()
    assert len(dm.train_set) == len(dm.train_eval_set) == 20
    assert torch.bincount(dm.train_set.labels).tolist() == [2] * 10  # 2 of every class
    assert torch.equal(dm.val_set.images, full.val_set.images) and torch.equal(dm.test_set.images, full.test_set.images)
    # the subset is drawn from the training images, never from validation
    train_rows = {tuple(x.flatten().tolist()) for x in full.train_set.images}
    assert all(tuple(x.flatten().tolist()) in train_rows for x in dm.train_set.images)
    again = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, train_size=20)
    again.setup()
    assert torch.equal(again.train_set.images, dm.train_set.images)  # fixed by split_seed


@pytest.mark.parametrize("bad", [5, 0, 2.5, True])
def test_bad_train_size_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="train_size"):
        FashionMNISTDataModule(train_size=bad)


def test_train_size_larger_than_the_training_split_is_refused(fmnist_folder):
    dm = FashionMNISTDataModule(root=str(fmnist_folder), val_size=20, train_size=50)
    with pytest.raises(ValueError, match="train_size=50"):
        dm.setup()
