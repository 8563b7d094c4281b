import time

import pytest
import torch

from derf_zoo.data import DigitsDataModule, ImageDataModule, load_digits


def test_embedded_digits_are_the_real_dataset():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 1
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_split_is_fixed_stratified_and_normalised():
    a, b = DigitsDataModule(), DigitsDataModule()
    a.setup("fit")
    b.setup("fit")
    assert len(a.train_set) == 1438 and len(a.val_set) == 359
    torch.testing.assert_close(a.val_set.images, b.val_set.images)
    val_counts = torch.bincount(a.val_set.labels, minlength=10)
    assert val_counts.min() >= 35 and val_counts.max() <= 37  # 20% of every class
    x, _ = next(iter(a.val_dataloader()))
    assert x.shape[1:] == (1, 16, 16)
    everything = torch.cat([a.train_eval_set.images, a.val_set.images])
    assert abs(everything.mean().item()) < 0.01 and abs(everything.std().item() - 1) < 0.01


def test_digits_shift_augmentation_only_in_training():
    data = DigitsDataModule(max_shift=2)
    data.setup("fit")
    torch.manual_seed(0)
    shifted = [data.train_set[0][0] for _ in range(8)]
    assert any(not torch.equal(shifted[0], s) for s in shifted)
    assert torch.equal(data.train_eval_set[0][0], data.train_eval_set[0][0])


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        DigitsDataModule(val_fraction=1.5)
    with pytest.raises(ValueError, match=r"img_size must be an integer >= 8 \(the digits are 8x8\), got 4\."):
        DigitsDataModule(img_size=4)


def test_image_folder(image_folder):
    data = ImageDataModule(root=str(image_folder), img_size=32, batch_size=4, num_workers=0)
    data.setup("fit")
    assert data.num_classes == 3 and len(data.train_set) == 12 and len(data.val_set) == 12
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
    x, _ = next(iter(data.train_eval_dataloader()))
    assert x.shape == (4, 3, 32, 32)


def test_image_folder_missing_or_empty(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match=r"does not exist\. Expected an ImageFolder layout"):
        ImageDataModule(root=str(tmp_path / "nowhere"), num_workers=0).setup("fit")
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders with images"):
        ImageDataModule(root=str(empty), num_workers=0).setup("fit")
    with pytest.raises(ValueError, match="exactly one of root="):
        ImageDataModule(root=str(image_folder), dataset="imagenet-1k")


def test_hugging_face_dataset_from_a_local_folder(tmp_path):
    datasets = pytest.importorskip("datasets", reason="Hugging Face datasets is an optional data source")
    from PIL import Image

    folder = tmp_path / "hf"
    folder.mkdir()
    for split, n in (("train", 6), ("validation", 4)):
        ds = datasets.Dataset.from_dict(
            {
                "image": [Image.new("RGB", (20, 20), (i * 30, 0, 0)) for i in range(n)],
                "label": [i % 2 for i in range(n)],
            },
            features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}),
        )
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    data = ImageDataModule(dataset=str(folder), img_size=16, batch_size=2, num_workers=0, cache_dir=str(tmp_path / "c"))
    data.setup("fit")
    assert data.num_classes == 2 and len(data.train_set) == 6 and len(data.val_set) == 4
    x, _ = next(iter(data.val_dataloader()))
    assert x.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"has no column 'img'"):
        ImageDataModule(dataset=str(folder), image_key="img", num_workers=0, cache_dir=str(tmp_path / "c")).setup("fit")


def test_missing_hub_dataset_offline_fails_fast_and_clearly(tmp_path):
    pytest.importorskip("datasets", reason="Hugging Face datasets is an optional data source")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"cannot load split 'train' of dataset 'no-such-org/no-such-set'"):
        ImageDataModule(dataset="no-such-org/no-such-set", cache_dir=str(tmp_path), num_workers=0).setup("fit")
    assert time.perf_counter() - start < 10
