"""GenomicBenchmarks: the folder layout, the papers' protocol, and a DataModule for any labelled sequences.

The ``genomic-benchmarks`` package downloads a task to ``~/.genomic_benchmarks/<task>/{train,test}/<class>/*.txt``,
one sequence per file. HyenaDNA and Caduceus (``src/dataloaders/datasets/genomic_bench_dataset.py``) read that
layout with labels = the class folders in sorted order, hold out 10 % of ``train`` for validation with a seeded
random split, test on ``test``, tokenize without special tokens, pad on the left to ``max_length`` and truncate
longer sequences; training runs 10 epochs and the papers average 5 seeds of the split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from derf_zoo._validate import check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.dna import PAD_ID, DNATokenizer, reverse_complement_ids

__all__ = ["GenomicBenchmarksDataModule", "LabelledSequenceDataModule", "SequenceDataset", "read_genomic_benchmark",
           "seeded_split"]  # fmt: skip

SPLITS = ("train", "test")
Labelled = list[tuple[str, int]]


def read_genomic_benchmark(root: str | Path, task: str) -> tuple[dict[str, Labelled], list[str]]:
    """The ``train`` and ``test`` sequences of ``<root>/<task>`` with their labels, and the sorted class names.

    Raises:
        FileNotFoundError: no task folder (the message lists the tasks in ``root``), a missing split, or a class
            folder of one split missing from the other; ValueError: a split or class without sequences.
    """
    root = Path(root).expanduser()
    folder = root / task
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        there = f"tasks there: {', '.join(found)}" if found else "the folder has no tasks"
        raise FileNotFoundError(f"No GenomicBenchmarks task {task!r} in {root}; {there}.")
    classes_by_split = {}
    for split in SPLITS:
        if not (folder / split).is_dir():
            present = sorted(p.name for p in folder.iterdir() if p.is_dir())
            raise FileNotFoundError(f"{folder} has no {split!r} split (expected {'/'.join(SPLITS)}, found "
                                    f"{present or 'nothing'}).")  # fmt: skip
        classes_by_split[split] = sorted(p.name for p in (folder / split).iterdir() if p.is_dir())
    classes = sorted(set().union(*classes_by_split.values()))
    if not classes:
        raise ValueError(f"{folder} has no class folders under train/ and test/.")
    for split, present in classes_by_split.items():
        missing = [c for c in classes if c not in present]
        if missing:
            raise FileNotFoundError(f"{folder / split} lacks the class folder(s) {missing} (classes: {classes}).")
    out: dict[str, Labelled] = {}
    for split in SPLITS:
        items: Labelled = []
        for label, name in enumerate(classes):
            files = sorted((folder / split / name).glob("*.txt"))
            if not files:
                raise ValueError(f"{folder / split / name} holds no *.txt sequence files.")
            items += [(f.read_text().strip(), label) for f in files]
        out[split] = items
    return out, classes


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)`` of a random split with ``round(n * val_fraction)`` in val (the papers' protocol:
    a seeded random split of the training set, not stratified)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    return sorted(order[n_val:]), sorted(order[:n_val])


class SequenceDataset(Dataset):
    """Tokenized, padded sequences with labels; ``rc_prob`` reverse-complements a sample (padding kept in place)."""

    def __init__(self, ids: Tensor, labels: Tensor, rc_prob: float = 0.0) -> None:
        self.ids, self.labels, self.rc_prob = ids, labels, rc_prob

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.ids[i]
        if self.rc_prob and torch.rand(()) < self.rc_prob:
            x = reverse_complement_ids(x, pad_id=PAD_ID)
        return x, self.labels[i]


class LabelledSequenceDataModule(SplitDataModule):
    """Train/val/test loaders over labelled DNA sequences; subclasses provide :meth:`load_splits`.

    Args:
        max_length: tokens per sample: shorter sequences are padded, longer ones truncated (counted, reported).
        padding_side: ``"left"`` (HyenaDNA and Caduceus) or ``"right"``.
        add_eos: append ``[SEP]`` (the references' ``add_eos``; off for GenomicBenchmarks).
        rc_aug: reverse-complement a training sample with probability 0.5.
        batch_size / num_workers: loader settings.
    """

    def __init__(self, max_length: int = 512, padding_side: Literal["left", "right"] = "left",
                 add_eos: bool = False, rc_aug: bool = False, batch_size: int = 64,
                 num_workers: int = 0) -> None:  # fmt: skip
        super().__init__()
        check_int("max_length", max_length, 1)
        self.tokenizer = DNATokenizer(padding_side=padding_side, add_eos=add_eos)
        self.test_set: SequenceDataset | None = None
        self.classes: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        """``({"train": [...], "val": [...], "test": [...]}, classes)`` of ``(sequence, label)`` pairs."""
        raise NotImplementedError

    def _dataset(self, items: Labelled, split: str, rc_prob: float = 0.0) -> SequenceDataset:
        max_length = self.hparams.max_length
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ids = self.tokenizer.batch_encode([s for s, _ in items], max_length, truncation=True)
        for w in caught:
            warnings.warn(f"{type(self).__name__} {split}: {w.message}", stacklevel=3)
        longer = sum(len(s) + self.tokenizer.add_eos > max_length for s, _ in items)
        if longer:
            rank_zero_info(f"{type(self).__name__} {split}: {longer} of {len(items)} sequences are longer than "
                           f"max_length={max_length}; truncated to their first {max_length} tokens.")
        return SequenceDataset(ids, torch.tensor([y for _, y in items], dtype=torch.long), rc_prob)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits, self.classes = self.load_splits()
        self.train_set = self._dataset(splits["train"], "train", 0.5 if self.hparams.rc_aug else 0.0)
        self.train_eval_set = SequenceDataset(self.train_set.ids, self.train_set.labels)
        self.val_set = self._dataset(splits["val"], "val")
        self.test_set = self._dataset(splits["test"], "test")

    def train_dataloader(self) -> DataLoader:
        # Unlike images (mixup pairs samples), nothing needs an even batch: keep every training sequence.
        return self._loader(self.train_set, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


class GenomicBenchmarksDataModule(LabelledSequenceDataModule):
    """A GenomicBenchmarks task from its folder, with the papers' protocol (module doc).

    Args:
        root: the folder holding the tasks (``~/.genomic_benchmarks``).
        task: the task folder (``"human_nontata_promoters"``).
        val_fraction / split_seed: the seeded random train/val split of ``train`` (papers: 0.1, seeds 0..4 or
            their own; the test split is always ``test``).
        max_length / padding_side / add_eos / rc_aug / batch_size / num_workers: see
            :class:`LabelledSequenceDataModule`.
    """

    def __init__(self, root: str | Path, task: str, max_length: int = 512, val_fraction: float = 0.1,
                 split_seed: int = 0, padding_side: Literal["left", "right"] = "left", add_eos: bool = False,
                 rc_aug: bool = False, batch_size: int = 64, num_workers: int = 0) -> None:  # fmt: skip
        super().__init__(max_length, padding_side, add_eos, rc_aug, batch_size, num_workers)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
        self.save_hyperparameters()

    def load_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        data, classes = read_genomic_benchmark(self.hparams.root, self.hparams.task)
        train, val = seeded_split(len(data["train"]), self.hparams.val_fraction, self.hparams.split_seed)
        return {"train": [data["train"][i] for i in train], "val": [data["train"][i] for i in val],
                "test": data["test"]}, classes  # fmt: skip


def write_sequences(root: str | Path, task: str, splits: dict[str, Labelled], classes: Sequence[str],
                    overwrite: bool = False) -> Path:  # fmt: skip
    """Write ``{"train": [...], "test": [...]}`` in the GenomicBenchmarks layout under ``<root>/<task>``.

    The task is written to a temporary folder next to ``<root>/<task>`` and swapped in once complete, so an
    overwrite leaves no sequence or class folder of the old data behind (the reader would pick those up) and an
    interrupted write leaves the old task intact. The old folder is deleted only after the new one is in place.

    Raises:
        FileExistsError: the task folder exists and ``overwrite`` is False (nothing is written or deleted).
    """
    root = Path(root)
    folder = root / task
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace its files.")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{task}.writing-", dir=root))
    try:
        for split in SPLITS:
            for label, name in enumerate(classes):
                out = staging / split / name
                out.mkdir(parents=True, exist_ok=True)
                for i, (seq, _) in enumerate(item for item in splits[split] if item[1] == label):
                    (out / f"{i}.txt").write_text(seq)
        if not folder.exists():
            os.replace(staging, folder)
            return folder
        # A directory cannot be renamed onto a non-empty one: move the old task aside, then swap the new one in.
        retired = Path(tempfile.mkdtemp(prefix=f".{task}.replaced-", dir=root))
        os.replace(folder, retired / task)
        try:
            os.replace(staging, folder)
        except BaseException:
            os.replace(retired / task, folder)  # put the old task back
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired)
    return folder
