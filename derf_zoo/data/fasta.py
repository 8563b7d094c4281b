"""Genomes for window sampling: indexed FASTA through ``pyfaidx``, or sequences held in memory; BED intervals.

``pyfaidx`` reads plain FASTA (and BGZF, with Biopython) by random access through a ``.fai`` index, so a window of a
3 Gbp genome costs one seek. An ordinary gzip file cannot be indexed, so :class:`FastaGenome` decompresses a
``.gz`` FASTA once to a cache file (``cache_dir``, default ``$DERF_ZOO_CACHE/fasta`` or ``~/.cache/derf_zoo/fasta``;
its name carries the source's size and modification time, so a changed source is decompressed again) and indexes
that. The index of a file in a read-only folder (the package's embedded genomes) is written to the cache too.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FastaGenome", "Genome", "InMemoryGenome", "Interval", "read_bed", "read_fasta"]


def default_cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    root = os.environ.get("DERF_ZOO_CACHE") or cache / "derf_zoo"
    return Path(root) / "fasta"


@dataclass(frozen=True)
class Interval:
    """A half-open region ``[start, end)`` of a record, 0-based (BED convention), optionally tagged with a split."""

    record: str
    start: int
    end: int
    split: str | None = None

    def __len__(self) -> int:
        return self.end - self.start


class Genome:
    """Named records with random access; subclasses implement :meth:`_fetch`, :attr:`names` and :meth:`_length`."""

    source = "genome"

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    def check_record(self, name: str) -> None:
        """Raise a KeyError naming ``name`` and listing the records when the genome has no such record."""
        if name not in self.names:
            shown = ", ".join(self.names[:20]) + (f", ... ({len(self.names)} in all)" if len(self.names) > 20 else "")
            raise KeyError(f"{self.source} has no record {name!r}; its records are: {shown}.")

    def length(self, name: str) -> int:
        """Number of bases of record ``name``."""
        self.check_record(name)
        return self._length(name)

    def fetch(self, name: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` of record ``name`` (0-based); the range must lie inside the record."""
        n = self.length(name)
        if not 0 <= start <= end <= n:
            raise IndexError(f"{self.source}: [{start}, {end}) is outside record {name!r} of length {n}.")
        return self._fetch(name, start, end)

    def _length(self, name: str) -> int:
        raise NotImplementedError

    def _fetch(self, name: str, start: int, end: int) -> str:
        raise NotImplementedError


class InMemoryGenome(Genome):
    """Records held as Python strings (small genomes: the embedded lambda and E. coli)."""

    def __init__(self, records: Mapping[str, str], source: str = "in-memory genome") -> None:
        if not records:
            raise ValueError(f"{source} has no records.")
        self.records = dict(records)
        self.source = source

    @property
    def names(self) -> list[str]:
        return list(self.records)

    def _length(self, name: str) -> int:
        return len(self.records[name])

    def _fetch(self, name: str, start: int, end: int) -> str:
        return self.records[name][start:end]


def _open_text(path: Path):
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="latin-1") if gz else path.open("r", encoding="latin-1")


def read_fasta(path: str | Path) -> dict[str, str]:
    """All records of a (plain or gzipped) FASTA file in memory, keyed by the header's first word.

    Raises:
        FileNotFoundError: no such file. ValueError: no record, sequence before the first header, or a name twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No FASTA file {path}.")
    try:
        return _parse_fasta(path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path} is a corrupt or truncated gzip file ({err}); download it again.") from None


def _parse_fasta(path: Path) -> dict[str, str]:
    records: dict[str, list[str]] = {}
    current: list[str] | None = None
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith(">"):
                name = line[1:].split(maxsplit=1)[0] if line[1:].strip() else ""
                if not name or name in records:
                    raise ValueError(f"{path}:{number}: {'an empty' if not name else 'a repeated'} record name "
                                     f"{name!r}.")  # fmt: skip
                current = records[name] = []
            elif line and not line.startswith(";"):
                if current is None:
                    raise ValueError(f"{path}:{number}: sequence before the first '>' header; not a FASTA file.")
                current.append(line)
    if not records:
        raise ValueError(f"{path} has no FASTA record (no line starts with '>').")
    return {name: "".join(parts) for name, parts in records.items()}


class FastaGenome(Genome):
    """A FASTA file read by random access with ``pyfaidx`` (upper-cased; see the module doc for gzip).

    Args:
        path: plain, BGZF or gzip FASTA.
        cache_dir: where a gzip file is decompressed and a read-only folder's index is written.
    """

    def __init__(self, path: str | Path, cache_dir: str | Path | None = None) -> None:
        import pyfaidx

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"No FASTA file {self.path}.")
        self.source = str(self.path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        plain, index = self._plain_file()
        try:
            self.fasta = pyfaidx.Fasta(str(plain), indexname=index, as_raw=True, sequence_always_upper=True)
        except (pyfaidx.FastaIndexingError, ValueError) as err:
            raise ValueError(f"Cannot index {self.path} as FASTA: {err}") from err

    def _tag(self) -> str:
        stat = self.path.stat()
        return hashlib.sha1(f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]

    def _plain_file(self) -> tuple[Path, str | None]:
        with self.path.open("rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        if not gz:
            writable = os.access(self.path.parent, os.W_OK)
            index = None if writable else str(self._cached(f"{self.path.name}.{self._tag()}.fai"))
            return self.path, index
        plain = self._cached(f"{self.path.name.removesuffix('.gz')}.{self._tag()}.fa")
        if not plain.is_file():
            tmp = plain.with_suffix(f".tmp{os.getpid()}")
            try:
                with gzip.open(self.path, "rb") as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except BaseException as err:  # for hg38 the partial file is gigabytes: never leave it in the cache
                tmp.unlink(missing_ok=True)
                if isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
                    raise ValueError(f"{self.path} is a corrupt or truncated gzip file ({err}); download it again "
                                     f"(the partial decompression in {self.cache_dir} was removed).") from None
                raise
            tmp.replace(plain)  # atomic: a concurrent reader never sees half a file
        return plain, None

    def _cached(self, name: str) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir / name

    @property
    def names(self) -> list[str]:
        return list(self.fasta.keys())

    def _length(self, name: str) -> int:
        return len(self.fasta[name])

    def _fetch(self, name: str, start: int, end: int) -> str:
        return self.fasta[name][start:end]


SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_bed(path: str | Path) -> list[Interval]:
    """Intervals of a BED file (``record start end [split]``; 0-based, end exclusive). A 4th column naming
    ``train``, ``valid``/``val`` or ``test`` assigns the interval to that split (the layout of the HyenaDNA and
    Caduceus ``sequences_human.bed``); other 4th columns (feature names) are ignored. ``#``, ``track`` and
    ``browser`` lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No BED file {path}.")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        try:
            start, end = int(cols[1]), int(cols[2])
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: not a BED line (record, start, end): {line!r}.") from None
        if not 0 <= start < end:
            raise ValueError(f"{path}:{number}: needs 0 <= start < end, got start {start}, end {end}.")
        split = SPLIT_NAMES.get(cols[3].strip().lower()) if len(cols) > 3 else None
        out.append(Interval(cols[0], start, end, split))
    if not out:
        raise ValueError(f"{path} has no intervals.")
    return out
