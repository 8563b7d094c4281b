"""Genome pretraining data: random training windows, fixed validation windows, splits by record or position.

The HyenaDNA/Caduceus recipe (``src/dataloaders/datasets/hg38_dataset.py``): intervals of a reference genome (a BED
file of train/valid/test regions), from which every training sample is a random sub-window of ``max_length``
bases, reverse-complemented with probability 0.5 when ``rc_aug`` is on. Here:

- **training** windows are drawn from a generator seeded with ``(seed, epoch * samples_per_epoch + i)``: random
  positions each epoch, yet the same for every run, worker count and machine (:class:`EpochSampler` hands the
  epoch to the dataset through the sample index; Lightning calls its ``set_epoch``);
- **validation/test** windows are fixed and non-overlapping, tiling the held-out intervals (optionally an evenly
  spaced subset of ``max_eval_windows``), so every epoch and every model is scored on the same bases;
- **splits**: a BED file's 4th column (``train``/``valid``/``test``), else whole records (``val_records``,
  ``test_records``: a chromosome split), else positions: the last ``val_fraction + test_fraction`` of every interval
  is held out (val, then test), so no held-out base is ever trained on.

The DataModule yields windows of token ids only. The task turns them into LM pairs (:func:`causal_lm_pair` for
causal LM, :func:`mask_tokens` for masked LM), so one DataModule serves both modes and the validation masks come
from a fixed seed per batch in the task (comparable across epochs and norms). A causal window has ``seq_len + 1``
tokens, so the model sees ``seq_len`` inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from derf_zoo._validate import check_choice, check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.dna import DNATokenizer, reverse_complement_ids
from derf_zoo.data.fasta import FastaGenome, Genome, Interval, read_bed

__all__ = ["EpochSampler", "FixedWindows", "GenomeDataModule", "RandomWindows", "split_intervals"]

LMMode = Literal["causal", "masked"]


def split_intervals(genome: Genome, intervals: Sequence[Interval] | None = None, val_fraction: float = 0.1,
                    test_fraction: float = 0.0, val_records: Sequence[str] = (),
                    test_records: Sequence[str] = ()) -> dict[str, list[Interval]]:  # fmt: skip
    """Assign intervals (default: every whole record) to ``train``/``val``/``test`` (see the module doc).

    An interval tagged with a split (BED 4th column) keeps it. Otherwise, with ``val_records``/``test_records``
    the named records are held out whole and every other record trains; without them every interval is cut by
    position: the first ``1 - val_fraction - test_fraction`` trains, the next ``val_fraction`` validates, the
    rest tests.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 with a "
                         "sum < 1.")  # fmt: skip
    for name in (*val_records, *test_records):
        genome.check_record(name)
    both = set(val_records) & set(test_records)
    if both:
        raise ValueError(f"Records {sorted(both)} are in both val_records and test_records.")
    if intervals is None:
        intervals = [Interval(name, 0, genome.length(name)) for name in genome.names]
    out: dict[str, list[Interval]] = {"train": [], "val": [], "test": []}
    by_record = bool(val_records or test_records)
    for iv in intervals:
        n = genome.length(iv.record)  # also names a missing record
        if iv.end > n:
            raise ValueError(f"Interval {iv.record}:{iv.start}-{iv.end} ends past the record's length {n}.")
        if iv.split is not None:
            out[iv.split].append(iv)
        elif by_record:
            split = "val" if iv.record in val_records else "test" if iv.record in test_records else "train"
            out[split].append(iv)
        else:
            a = iv.start + round(len(iv) * (1 - val_fraction - test_fraction))
            b = a + round(len(iv) * val_fraction)
            for split, lo, hi in (("train", iv.start, a), ("val", a, b), ("test", b, iv.end)):
                if hi > lo:
                    out[split].append(Interval(iv.record, lo, hi, split))
    _check_disjoint(out)
    return out


def _check_disjoint(splits: dict[str, list[Interval]]) -> None:
    """Raise ValueError when intervals of two splits share bases (validation windows inside training data)."""
    tagged = sorted(((iv.record, iv.start, iv.end, split) for split, ivs in splits.items() for iv in ivs))
    reach: dict[tuple[str, str], tuple[int, int]] = {}  # (record, split) -> the (end, start) reaching furthest
    for record, start, end, split in tagged:
        for other in splits:
            far = reach.get((record, other))
            if other != split and far is not None and far[0] > start:
                raise ValueError(f"The {other} interval {record}:{far[1]}-{far[0]} and the {split} interval "
                                 f"{record}:{start}-{end} overlap: {split} windows would hold {other} data. Make "
                                 "the BED file's splits disjoint.")  # fmt: skip
        if end > reach.get((record, split), (-1, 0))[0]:
            reach[(record, split)] = (end, start)


class _Windows(Dataset):
    def __init__(self, genome: Genome, window: int, rc_prob: float, tokenizer: DNATokenizer | None) -> None:
        self.genome, self.window, self.rc_prob = genome, window, rc_prob
        self.tokenizer = tokenizer or DNATokenizer(on_unknown="ignore")
        self.unknown_reported = False

    def _tokens(self, record: str, start: int, flip: bool) -> Tensor:
        seq = self.genome.fetch(record, start, start + self.window)
        ids, unknown = self.tokenizer.encode(seq, return_unknown_count=True)
        if unknown and not self.unknown_reported:
            self.unknown_reported = True  # once per dataset: a genome with IUPAC codes would flood the log
            bad = sorted({ch for ch in seq.upper() if ch not in "ACGTN"})
            warnings.warn(f"{self.genome.source}: the window {record}:{start}-{start + self.window} has {unknown} "
                          f"characters outside ACGTN ({', '.join(map(repr, bad))}), encoded as [UNK]; later "
                          "windows are not reported.", stacklevel=3)  # fmt: skip
        return reverse_complement_ids(ids) if flip else ids


class RandomWindows(_Windows):
    """``samples`` random windows per epoch from ``intervals`` (each placed uniformly over all valid starts).

    Sample ``k`` (the index :class:`EpochSampler` yields: ``epoch * samples + i``) is drawn from
    ``numpy.random.default_rng([seed, k])``, so the windows depend only on the seed, the epoch and the position.
    """

    def __init__(self, genome: Genome, intervals: Sequence[Interval], window: int, samples: int, seed: int = 0,
                 rc_prob: float = 0.0, tokenizer: DNATokenizer | None = None) -> None:  # fmt: skip
        super().__init__(genome, window, rc_prob, tokenizer)
        self.intervals = [iv for iv in intervals if len(iv) >= window]
        if not self.intervals:
            longest = max((len(iv) for iv in intervals), default=0)
            raise ValueError(f"No training interval holds a window of {window} bases (the longest has {longest}); "
                             "lower seq_len.")  # fmt: skip
        counts = np.array([len(iv) - window + 1 for iv in self.intervals], dtype=np.float64)
        self.cumulative = np.cumsum(counts)
        self.samples, self.seed = samples, seed

    def __len__(self) -> int:
        return self.samples

    def position(self, k: int) -> tuple[str, int, bool]:
        """``(record, start, reverse-complemented)`` of sample ``k``."""
        rng = np.random.default_rng([self.seed, int(k)])
        u = int(rng.integers(0, int(self.cumulative[-1])))  # uniform over every valid start of every interval
        j = int(np.searchsorted(self.cumulative, u, side="right"))
        offset = u - (int(self.cumulative[j - 1]) if j else 0)
        return self.intervals[j].record, self.intervals[j].start + offset, bool(rng.random() < self.rc_prob)

    def __getitem__(self, k: int) -> Tensor:
        return self._tokens(*self.position(k))


class FixedWindows(_Windows):
    """Non-overlapping windows tiling ``intervals`` (the tail shorter than a window is dropped); with
    ``max_windows``, an evenly spaced subset of them. Never reverse-complemented."""

    def __init__(self, genome: Genome, intervals: Sequence[Interval], window: int, max_windows: int | None = None,
                 tokenizer: DNATokenizer | None = None) -> None:  # fmt: skip
        super().__init__(genome, window, 0.0, tokenizer)
        starts = [(iv.record, s) for iv in intervals for s in range(iv.start, iv.end - window + 1, window)]
        if max_windows is not None and len(starts) > max_windows:
            keep = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
            starts = [starts[i] for i in keep]
        self.starts = starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Tensor:
        record, start = self.starts[i]
        return self._tokens(record, start, False)


class EpochSampler(Sampler[int]):
    """Yields ``epoch * n + i`` for ``i < n``: new random windows each epoch from a dataset keyed by the index."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


def _genome(fasta: str | Path | Genome, cache_dir: str | Path | None) -> Genome:
    if isinstance(fasta, Genome):
        return fasta
    from derf_zoo.data.genomes import EMBEDDED_GENOMES, embedded_genome

    if isinstance(fasta, str) and fasta in EMBEDDED_GENOMES:
        return embedded_genome(fasta)
    return FastaGenome(fasta, cache_dir=cache_dir)


class GenomeDataModule(SplitDataModule):
    """Windows of a genome for causal or masked LM pretraining (HyenaDNA / Caduceus style).

    Args:
        fasta: a FASTA path (plain, BGZF or gzip), a :class:`~derf_zoo.data.fasta.Genome`, or an embedded genome
            name (``"ecoli"``: the first 1 Mbp of E. coli 536; ``"lambda"``: phage lambda).
        seq_len: tokens the model sees per sample (causal windows carry one more base for the shifted target).
        mode: ``"causal"`` (HyenaDNA) or ``"masked"`` (Caduceus); only decides the window length here.
        max_len: the model's context; a ``seq_len`` above it is an error here rather than deep inside the model.
        bed: optional BED file of intervals (4th column = split, as in the references' ``sequences_human.bed``).
        record: use only this record (named in the error, with the available ones, when absent).
        val_fraction / test_fraction / val_records / test_records: see :func:`split_intervals`.
        samples_per_epoch: random training windows per epoch.
        max_eval_windows: cap on validation/test windows (an evenly spaced subset).
        rc_aug: reverse-complement a training window with probability 0.5 (HyenaDNA: on; Caduceus: off).
        seed: seed of the training windows.
        batch_size / num_workers: loader settings.
        cache_dir: where a gzip FASTA is decompressed (see :mod:`derf_zoo.data.fasta`).
    """

    def __init__(
        self,
        fasta: str | Path | Genome = "ecoli",
        seq_len: int = 1024,
        mode: LMMode = "causal",
        max_len: int | None = None,
        bed: str | Path | None = None,
        record: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        val_records: Sequence[str] = (),
        test_records: Sequence[str] = (),
        samples_per_epoch: int = 1024,
        max_eval_windows: int | None = 256,
        rc_aug: bool = False,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        check_choice("mode", mode, ("causal", "masked"))
        check_int("seq_len", seq_len, 1)
        check_int("samples_per_epoch", samples_per_epoch, 1)
        if max_len is not None and seq_len > max_len:
            raise ValueError(f"seq_len={seq_len} is longer than the model's context max_len={max_len}; lower seq_len "
                             f"to at most {max_len}.")  # fmt: skip
        self.save_hyperparameters(ignore=["fasta"] if isinstance(fasta, Genome) else None)
        self.fasta = fasta
        self.window = seq_len + (mode == "causal")
        self.test_set: FixedWindows | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        genome = _genome(self.fasta, hp.cache_dir)
        intervals = read_bed(hp.bed) if hp.bed is not None else None
        if hp.record is not None:
            genome.check_record(hp.record)
            intervals = [iv for iv in (intervals or [Interval(hp.record, 0, genome.length(hp.record))])
                         if iv.record == hp.record]  # fmt: skip
        splits = split_intervals(genome, intervals, hp.val_fraction, hp.test_fraction, hp.val_records,
                                 hp.test_records)  # fmt: skip
        self.genome, self.splits = genome, splits
        self.train_set = RandomWindows(genome, splits["train"], self.window, hp.samples_per_epoch, hp.seed,
                                       0.5 if hp.rc_aug else 0.0)  # fmt: skip
        self.train_eval_set = FixedWindows(genome, splits["train"], self.window, hp.max_eval_windows)
        self.val_set = FixedWindows(genome, splits["val"], self.window, hp.max_eval_windows)
        if len(self.val_set) == 0:
            raise ValueError(f"The validation split holds no window of {self.window} bases ({splits['val']}); raise "
                             "val_fraction or lower seq_len.")  # fmt: skip
        if splits["test"]:
            self.test_set = FixedWindows(genome, splits["test"], self.window, hp.max_eval_windows)

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a dataloader.")
        workers = self.hparams.num_workers
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, sampler=EpochSampler(len(self.train_set)),
                          drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available())  # fmt: skip

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set if self.test_set is not None else self.val_set, shuffle=False)
