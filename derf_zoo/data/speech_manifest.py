"""fairseq's audio manifests: a tsv whose first line is the root folder, then ``relative_path<TAB>num_samples``.

This is the format of fairseq's ``examples/wav2vec/wav2vec_manifest.py`` (``num_samples`` = frames of the file as
stored, from ``soundfile.info``), so manifests written for fairseq work here and the other way round.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from derf_zoo.data.audio import audio_info

__all__ = ["AUDIO_EXTENSIONS", "Manifest", "read_manifest", "write_manifest"]

AUDIO_EXTENSIONS = ("flac", "wav", "ogg")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: ``root`` and the (relative path, number of samples) of every utterance, in file order."""

    root: Path
    entries: tuple[tuple[str, int], ...]
    source: Path | None = None  # the tsv it was read from, named in errors

    def paths(self) -> list[Path]:
        return [self.root / rel for rel, _ in self.entries]


def read_manifest(path: str | Path) -> Manifest:
    """Parse a manifest and check its root is a folder (the files themselves are checked by the dataset).

    Raises:
        FileNotFoundError: the manifest, or the root folder its first line names, does not exist.
        ValueError: a line is not ``relative_path<TAB>num_samples`` with an integer count >= 0, or there are none.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"speech manifest {path} does not exist. Write one with derf_zoo.data.write_manifest(folder, out) "
            "(first line: the root folder; then one 'relative_path<TAB>num_samples' line per file)."
        )
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"speech manifest {path} is empty; its first line must be the root folder of the audio.")
    # The line as written (a folder name may end in a space); fairseq strips it, so a stripped name is the fallback.
    exact = Path(lines[0].rstrip("\r")).expanduser()
    root = exact if exact.is_dir() else Path(lines[0].strip()).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"speech manifest {path}: its root folder {root} (line 1) does not exist; the audio was moved or the "
            "manifest was written on another machine. Rewrite it, or edit line 1 to the folder that holds the files."
        )
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 2 or not fields[1].strip().isdigit():
            raise ValueError(
                f"speech manifest {path}, line {number}: expected 'relative_path<TAB>num_samples', got {line!r}."
            )
        entries.append((fields[0], int(fields[1])))
    if not entries:
        raise ValueError(f"speech manifest {path} lists no audio files (only the root line {root}).")
    return Manifest(root=root, entries=tuple(entries), source=path)


def write_manifest(
    folder: str | Path,
    out: str | Path,
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS,
    overwrite: bool = False,
) -> Manifest:
    """Write the manifest of every audio file under ``folder`` (recursively, sorted) to ``out``.

    For LibriSpeech: ``write_manifest("LibriSpeech/train-960", "manifests/train.tsv")`` and
    ``write_manifest("LibriSpeech/dev-other", "manifests/valid.tsv")`` (fairseq's validation set), then give
    ``manifest_dir="manifests"`` to ``SpeechDataModule``.

    Args:
        folder: the root; paths in the manifest are relative to it.
        out: the tsv to write.
        extensions: file endings counted as audio (without the dot, case-insensitive).
        overwrite: replace an existing ``out``; False raises instead.

    Returns:
        The manifest written.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        FileNotFoundError: ``folder`` does not exist or holds no audio file.
        AudioError: a file cannot be read by soundfile (named).
    """
    folder, out = Path(folder).expanduser().resolve(), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it.")
    if not folder.is_dir():
        raise FileNotFoundError(f"audio folder {folder} does not exist.")
    endings = tuple(f".{e.lower().lstrip('.')}" for e in extensions)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in endings)
    if not files:
        raise FileNotFoundError(f"audio folder {folder} holds no file ending in {', '.join(endings)}.")
    entries = tuple((p.relative_to(folder).as_posix(), audio_info(p).frames) for p in files)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join([str(folder), *(f"{rel}\t{n}" for rel, n in entries)]) + "\n")
    os.replace(tmp, out)  # never leave a half-written manifest behind
    return Manifest(root=folder, entries=entries, source=out)
