"""Text for causal language models: nanoGPT's token bins, a character tokenizer and the embedded Tiny Shakespeare.

nanoGPT's data format is two flat files of token ids, ``train.bin`` and ``val.bin`` (uint16, read with
``np.memmap``), and its ``get_batch`` cuts random windows of ``block_size + 1`` tokens from them.
:class:`TextDataModule` does the same (the task splits each window into inputs and shifted targets), keyed by
seed, epoch and position as the DNA windows are, so runs are reproducible; validation uses fixed, evenly spaced
windows. :func:`prepare_text` writes the bins (``derf-zoo prepare-text``) with GPT-2's BPE or characters.

Tiny Shakespeare (1,115,394 characters, public domain; data/assets/text/README.md) ships in the package: the
first 90 % of the characters train and the last 10 % validate, over the 65-character vocabulary, exactly as
nanoGPT's ``shakespeare_char``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from derf_zoo._validate import check_choice, check_int
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.genome import EpochSampler

__all__ = [
    "EMBEDDED_TEXTS",
    "CharTokenizer",
    "FixedTextWindows",
    "RandomTextWindows",
    "TextDataModule",
    "load_bins",
    "prepare_text",
    "shakespeare_text",
    "shakespeare_tokenizer",
    "split_text",
]

ASSETS = Path(__file__).resolve().parent / "assets" / "text"
#: Embedded corpora by name -> their file in data/assets/text.
EMBEDDED_TEXTS = {"shakespeare": "tinyshakespeare.txt.gz"}
#: nanoGPT's shakespeare_char split: the first 90 % of the characters train.
SHAKESPEARE_TRAIN_FRACTION = 0.9
BIN_DTYPE = np.uint16  # nanoGPT's: every GPT-2 id (< 50257) fits
META_NAME = "meta.json"


def shakespeare_text() -> str:
    """The embedded Tiny Shakespeare corpus (1,115,394 characters)."""
    with gzip.open(ASSETS / EMBEDDED_TEXTS["shakespeare"], "rt", encoding="utf-8") as f:
        return f.read()


def split_text(text: str, train_fraction: float = SHAKESPEARE_TRAIN_FRACTION) -> tuple[str, str]:
    """``(train, val)``: the first ``train_fraction`` of the characters and the rest (nanoGPT's prepare.py)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}.")
    n = int(len(text) * train_fraction)
    return text[:n], text[n:]


class CharTokenizer:
    """One id per character, ids in sorted character order (nanoGPT's ``shakespeare_char``).

    Args:
        chars: the vocabulary, in id order.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars or any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer needs distinct single characters, at least one.")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of every character in ``text``."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Characters -> ids.

        Raises:
            ValueError: a character outside the vocabulary (named, with its position).
        """
        try:
            return [self._ids[c] for c in text]
        except KeyError as err:
            pos = next(i for i, c in enumerate(text) if c not in self._ids)
            raise ValueError(f"Character {err.args[0]!r} at position {pos} is not in this tokenizer's "
                             f"{self.vocab_size}-character vocabulary.") from None  # fmt: skip

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> characters.

        Raises:
            ValueError: an id outside ``[0, vocab_size)``.
        """
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"Token id {i} is outside the vocabulary [0, {self.vocab_size}).")
            out.append(self.chars[i])
        return "".join(out)

    def meta(self) -> dict[str, Any]:
        """What ``meta.json`` records (nanoGPT keeps it in a pickled ``meta.pkl``; JSON needs no unpickling)."""
        return {"tokenizer": "char", "vocab_size": self.vocab_size, "chars": "".join(self.chars)}


def shakespeare_tokenizer() -> CharTokenizer:
    """The 65-character vocabulary of the embedded Tiny Shakespeare (what ``gpt2_nano_*`` models read)."""
    return CharTokenizer.from_text(shakespeare_text())


def _embedded_ids(name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    check_choice("embedded text", name, EMBEDDED_TEXTS)
    text = shakespeare_text()
    tokenizer = CharTokenizer.from_text(text)
    train, val = split_text(text)
    return (np.array(tokenizer.encode(train), dtype=BIN_DTYPE), np.array(tokenizer.encode(val), dtype=BIN_DTYPE),
            tokenizer.meta())  # fmt: skip


def load_bins(folder: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(train, val, meta)`` of a nanoGPT data folder: ``train.bin`` / ``val.bin`` as uint16 memmaps and the
    ``meta.json`` that :func:`prepare_text` writes (empty when absent, as for nanoGPT's own openwebtext bins).

    Raises:
        FileNotFoundError: a missing bin (the message says how to make one).
    """
    folder = Path(folder)
    bins = []
    for split in ("train", "val"):
        path = folder / f"{split}.bin"
        if not path.is_file():
            raise FileNotFoundError(f"No {path}: write the token bins with `derf-zoo prepare-text {folder} --files "
                                    "...` (or nanoGPT's data/*/prepare.py).")  # fmt: skip
        bins.append(np.memmap(path, dtype=BIN_DTYPE, mode="r"))
    meta_path = folder / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return bins[0], bins[1], meta


class RandomTextWindows(Dataset):
    """``samples`` random windows of ``window`` tokens per epoch (nanoGPT's ``get_batch``).

    Sample ``k`` (``epoch * samples + i`` from :class:`~derf_zoo.data.genome.EpochSampler`) starts at a position
    drawn from ``numpy.random.default_rng([seed, k])``: the windows depend only on the seed, epoch and position.
    """

    def __init__(self, data: np.ndarray, window: int, samples: int, seed: int = 0) -> None:
        if len(data) < window:
            raise ValueError(f"The training tokens ({len(data):,}) are fewer than one window of {window}; lower "
                             "seq_len.")  # fmt: skip
        self.data, self.window, self.samples, self.seed = data, window, samples, seed

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, k: int) -> Tensor:
        start = int(np.random.default_rng([self.seed, int(k)]).integers(0, len(self.data) - self.window + 1))
        return torch.from_numpy(self.data[start:start + self.window].astype(np.int64))


class FixedTextWindows(Dataset):
    """Non-overlapping windows tiling ``data`` (an evenly spaced subset of ``max_windows`` when there are more)."""

    def __init__(self, data: np.ndarray, window: int, max_windows: int | None = None) -> None:
        starts = np.arange(0, len(data) - window + 1, window)
        if max_windows is not None and len(starts) > max_windows:
            starts = starts[np.linspace(0, len(starts) - 1, max_windows).round().astype(int)]
        self.data, self.window, self.starts = data, window, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> Tensor:
        s = int(self.starts[i])
        return torch.from_numpy(self.data[s:s + self.window].astype(np.int64))


class TextDataModule(SplitDataModule):
    """Windows of token ids for causal LM: nanoGPT's ``train.bin``/``val.bin`` or an embedded corpus.

    Each sample is ``seq_len + 1`` tokens (inputs plus the shifted target), as nanoGPT's ``x``/``y`` pair.

    Args:
        data_dir: a folder with ``train.bin`` and ``val.bin`` (uint16; :func:`prepare_text` or nanoGPT's
            prepare scripts); give this or ``embedded``.
        embedded: an embedded corpus (``"shakespeare"``: Tiny Shakespeare, characters, fixed 90/10 split).
        seq_len: tokens the model sees per sample (nanoGPT's ``block_size``).
        max_len: the model's context; a longer ``seq_len`` is an error here, naming both.
        samples_per_epoch: random training windows per epoch.
        max_eval_windows: cap on the validation windows (and on the training split's evaluation windows for the
            evaluation-mode training loss), evenly spaced.
        seed: seed of the training windows.
        batch_size / num_workers: loader settings.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        embedded: str | None = None,
        seq_len: int = 1024,
        max_len: int | None = None,
        samples_per_epoch: int = 1024,
        max_eval_windows: int | None = 256,
        seed: int = 0,
        batch_size: int = 12,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (data_dir is None) == (embedded is None):
            raise ValueError("TextDataModule: give exactly one of data_dir (a folder with train.bin/val.bin) and "
                             f"embedded (one of {', '.join(EMBEDDED_TEXTS)}).")  # fmt: skip
        check_int("seq_len", seq_len, 1)
        check_int("samples_per_epoch", samples_per_epoch, 1)
        if max_len is not None and seq_len > max_len:
            raise ValueError(f"seq_len={seq_len} is longer than the model's context max_len={max_len}; lower seq_len "
                             f"to at most {max_len}.")  # fmt: skip
        self.save_hyperparameters()
        self.window = seq_len + 1
        self.meta: dict[str, Any] = {}

    @property
    def tokenizer(self) -> CharTokenizer | None:
        """The character tokenizer of the data (None for BPE bins or bins without meta.json)."""
        return CharTokenizer(self.meta["chars"]) if self.meta.get("tokenizer") == "char" else None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        train, val, self.meta = (_embedded_ids(hp.embedded) if hp.embedded is not None else load_bins(hp.data_dir))
        self.train_set = RandomTextWindows(train, self.window, hp.samples_per_epoch, hp.seed)
        self.train_eval_set = FixedTextWindows(train, self.window, hp.max_eval_windows)
        self.val_set = FixedTextWindows(val, self.window, hp.max_eval_windows)
        if len(self.val_set) == 0:
            raise ValueError(f"The validation tokens ({len(val):,}) hold no window of {self.window}; lower seq_len.")

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a dataloader.")
        workers = self.hparams.num_workers
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, sampler=EpochSampler(len(self.train_set)),
                          drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=torch.cuda.is_available())  # fmt: skip


# ---- writing the bins ---------------------------------------------------------------------------------------

GPT2_TOKENIZER = "openai-community/gpt2"


def gpt2_tokenizer(cache_dir: str | Path | None = None) -> Any:
    """GPT-2's BPE (``transformers``' fast tokenizer, files from the Hub).

    Raises:
        RuntimeError: the files are not cached and the Hub cannot be reached (the message says how to pre-fetch).
    """
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(GPT2_TOKENIZER, cache_dir=cache_dir)
    except OSError as err:
        raise RuntimeError(
            f"GPT-2's BPE files ({GPT2_TOKENIZER}: vocab.json, merges.txt, tokenizer.json) are not in the Hugging Face "
            "cache and the Hub cannot be reached (offline, or HF_HUB_OFFLINE=1). Pre-fetch them on a connected "
            f"machine with `hf download {GPT2_TOKENIZER} vocab.json merges.txt tokenizer.json tokenizer_config.json "
            "config.json` (or `python -c \"from transformers import AutoTokenizer; "
            f"AutoTokenizer.from_pretrained('{GPT2_TOKENIZER}')\"`) and copy the cache ($HF_HOME) here, or use "
            f"--tokenizer char. ({err})"
        ) from None


def _write_bin(path: Path, ids: Iterable[Sequence[int]]) -> int:
    """Write token id chunks as one uint16 file; returns the number of tokens."""
    n = 0
    with path.open("wb") as f:
        for chunk in ids:
            arr = np.asarray(chunk, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(BIN_DTYPE).max):
                raise ValueError(f"Token ids must fit uint16 (0..65535) for nanoGPT's bins, got {arr.max()}.")
            f.write(arr.astype(BIN_DTYPE).tobytes())
            n += arr.size
    return n


def prepare_text(out: str | Path, *, files: Sequence[str | Path] = (), embedded: str | None = None,
                 dataset: str | None = None, dataset_config: str | None = None, split: str = "train",
                 text_column: str = "text", tokenizer: str = "gpt2", val_fraction: float = 0.1, seed: int = 2357,
                 overwrite: bool = False, cache_dir: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    """Tokenise text into nanoGPT's ``train.bin`` / ``val.bin`` (uint16) plus ``meta.json``.

    Sources (one): text ``files`` (concatenated; the first ``1 - val_fraction`` of the characters train, as
    nanoGPT's shakespeare prepare.py), an ``embedded`` corpus, or a Hugging Face ``dataset`` (documents; a
    seeded ``train_test_split`` of ``val_fraction`` of them validates, as nanoGPT's openwebtext prepare.py with
    test_size 0.0005, seed 2357; with ``gpt2`` every document ends with the ``<|endoftext|>`` id 50256).

    Args:
        out: the folder to write.
        tokenizer: ``"gpt2"`` (BPE, 50257 ids) or ``"char"`` (the characters of the text, sorted).
        overwrite: replace bins that exist (refused otherwise).

    Returns:
        ``meta`` as written, with ``train_tokens`` and ``val_tokens``.

    Raises:
        ValueError: no source or several, an unknown tokenizer, a bad ``val_fraction``, existing bins.
        RuntimeError: GPT-2's BPE files unavailable offline (how to pre-fetch them).
    """
    if sum(x is not None and x != () and x != [] for x in (files or None, embedded, dataset)) != 1:
        raise ValueError("prepare_text: give exactly one source: files, embedded or dataset.")
    check_choice("tokenizer", tokenizer, ("gpt2", "char"))
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
    out = Path(out)
    existing = [p for p in (out / "train.bin", out / "val.bin", out / META_NAME) if p.exists()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(map(str, existing))} already exist; pass overwrite=True (--overwrite) to "
                         "replace them.")  # fmt: skip
    if dataset is not None:
        from datasets import load_dataset

        docs = load_dataset(dataset, dataset_config, split=split).train_test_split(test_size=val_fraction, seed=seed,
                                                                                 shuffle=True)  # fmt: skip
        parts = {"train": docs["train"][text_column], "val": docs["test"][text_column]}
    else:
        text = shakespeare_text() if embedded is not None else "".join(Path(f).read_text(encoding="utf-8")
                                                                       for f in files)  # fmt: skip
        if embedded is not None:
            check_choice("embedded text", embedded, EMBEDDED_TEXTS)
        train, val = split_text(text, 1.0 - val_fraction)
        parts = {"train": [train], "val": [val]}
    if tokenizer == "char":
        tok = CharTokenizer.from_text("".join(d for docs_ in parts.values() for d in docs_))
        encode, meta = tok.encode, tok.meta()
    else:
        bpe = gpt2_tokenizer(cache_dir)
        eot = bpe.eos_token_id

        def encode(doc: str) -> list[int]:
            ids = bpe(doc, add_special_tokens=False)["input_ids"]
            return [*ids, eot] if dataset is not None else ids

        meta = {"tokenizer": "gpt2", "vocab_size": len(bpe), "name": GPT2_TOKENIZER}
    out.mkdir(parents=True, exist_ok=True)
    for split_name, docs_ in parts.items():
        meta[f"{split_name}_tokens"] = _write_bin(out / f"{split_name}.bin", (encode(d) for d in docs_))
    (out / META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
    return meta
