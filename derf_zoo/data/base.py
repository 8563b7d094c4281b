"""What every classification DataModule of derf_zoo shares: its loaders."""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from derf_zoo._validate import check_int

__all__ = ["SplitDataModule", "check_loader_args"]


def check_loader_args(batch_size: Any, num_workers: Any = 0, owner: str = "DataModule") -> None:
    """Raise a ValueError that names the value unless ``batch_size`` is an int >= 1 and ``num_workers`` an int >= 0.

    A recipe's ``batch_size: -3`` (or 0, or 2.5) would otherwise surface as a traceback from deep inside a
    DataLoader once the fit is under way.
    """
    check_int("batch_size", batch_size, 1, owner=owner, why="the samples of one loader step, per device")
    check_int("num_workers", num_workers, 0, owner=owner, why="loader processes, 0 for none")


class SplitDataModule(L.LightningDataModule):
    """Loaders over ``train_set`` / ``val_set`` (filled by ``setup``); test and predict use the val split.

    Subclasses save ``batch_size`` and ``num_workers`` as hyperparameters and build the datasets;
    ``train_eval_dataset()`` is the training split with evaluation preprocessing (the paper's
    evaluation-mode training loss runs on it).
    """

    train_set: Dataset | None = None
    val_set: Dataset | None = None
    train_eval_set: Dataset | None = None

    def save_hyperparameters(self, *args, frame=None, **kwargs) -> None:
        """Lightning's, then the one check every subclass shares: ``batch_size`` and ``num_workers`` are valid."""
        frame = frame or inspect.currentframe().f_back  # the subclass's __init__, whose arguments get saved
        super().save_hyperparameters(*args, frame=frame, **kwargs)
        check_loader_args(self.hparams.get("batch_size", 1), self.hparams.get("num_workers", 0), type(self).__name__)

    def _loader(self, dataset: Dataset | None, shuffle: bool, drop_last: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a dataloader.")
        workers = self.hparams.num_workers
        return DataLoader(
            dataset, batch_size=self.hparams.batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=workers,
            persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        # drop_last: mixup/cutmix pair the samples of a batch and need an even batch
        return self._loader(self.train_set, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def train_eval_dataset(self) -> Dataset | None:
        return self.train_eval_set

    def train_eval_dataloader(self) -> DataLoader:
        """The training split without augmentation, for the evaluation-mode training loss (paper §6.1)."""
        return self._loader(self.train_eval_dataset(), shuffle=False)
