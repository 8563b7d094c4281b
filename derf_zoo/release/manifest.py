"""Writing entries into ``manifest.yaml`` through the YAML library: the file's other entries, their order and its
comments stay as they are.

The manifest is a hand-kept file (comments group the releases and name their data's licences), so a full
``yaml.safe_dump`` of the parsed file would drop them. Instead each new entry is dumped alone with
``yaml.safe_dump`` and spliced into the text: a new name is appended at the end of the ``weights`` list, a
replaced one (only with ``overwrite``) takes its old entry's place. The result is parsed back and must equal the
old list with exactly those changes, and pass :func:`~derf_zoo.hub.manifest.load_manifest`'s checks, before the
file is replaced (atomically).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ManifestEntryExistsError", "add_entries"]


class ManifestEntryExistsError(FileExistsError):
    """A manifest already lists an entry of that name, and replacing it was not asked for."""


def add_entries(path: Path, entries: Sequence[dict[str, Any]], *, overwrite: bool = False,
                comment: str | None = None) -> None:  # fmt: skip
    """Add ``entries`` to the manifest at ``path`` (created with a ``weights:`` list if missing).

    Args:
        path: the manifest file.
        entries: manifest entries (mappings with at least ``name``), in the order to write them.
        overwrite: replace entries whose name the manifest already lists, in place (default: refuse).
        comment: a comment (one or more lines, without ``#``) written above the appended entries.

    Raises:
        ManifestEntryExistsError: a name is already listed and ``overwrite`` is False; the file is unchanged.
        ValueError: the result would not be a valid manifest (a missing field, a name listed twice).
    """
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict) or not isinstance(data.get("weights") or [], list):
        raise ValueError(f"{path} is not a manifest: expected a mapping with a 'weights' list.")
    old = list(data.get("weights") or [])
    listed = [w.get("name") for w in old]
    names = [e["name"] for e in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"Entries to add name the same weights twice: {names}.")
    clash = [n for n in names if n in listed]
    if clash and not overwrite:
        raise ManifestEntryExistsError(f"{path} already lists {', '.join(clash)}; nothing was written. Pass "
                                       "--overwrite (overwrite=True) to replace those entries.")  # fmt: skip
    if "weights" not in data:
        text = text + ("" if not text or text.endswith("\n") else "\n") + "weights:\n"
    # an empty flow list ("weights: []") becomes a block list, which the entries are appended to
    text = re.sub(r"^weights *: *\[ *\] *$", "weights:", text, count=1, flags=re.MULTILINE)
    lines = text.splitlines(keepends=True)
    indent = _list_indent(lines)
    expected = list(old)
    appended: list[dict[str, Any]] = []
    for entry in entries:
        if entry["name"] in listed:
            start, end = _entry_span(lines, entry["name"], indent)
            lines[start:end] = _dump(entry, indent)
            expected[listed.index(entry["name"])] = entry
        else:
            appended.append(entry)
    if appended:
        end = _list_end(lines)
        if end > 0 and not lines[end - 1].endswith("\n"):
            lines[end - 1] += "\n"
        note = [f"{' ' * indent}# {line}\n".rstrip() + "\n" for line in (comment or "").splitlines()]
        lines[end:end] = note + [line for e in appended for line in _dump(e, indent)]
        expected += appended
    new_text = "".join(lines)
    parsed = yaml.safe_load(new_text)
    if parsed.get("weights") != [_plain(e) for e in expected] or {k: v for k, v in parsed.items() if k != "weights"} \
            != {k: v for k, v in data.items() if k != "weights"}:  # fmt: skip
        raise RuntimeError(f"Writing {names} into {path} would change other entries; nothing was written (a bug: "
                           "please report it with the manifest).")  # fmt: skip
    _replace(path, new_text)


def _plain(entry: dict[str, Any]) -> Any:
    """The entry as YAML reads it back (tuples become lists, ...)."""
    return yaml.safe_load(yaml.safe_dump(entry, allow_unicode=True))


def _dump(entry: dict[str, Any], indent: int) -> list[str]:
    """``entry`` as list-item lines at ``indent``: block style, short mappings (metrics) inline."""
    text = yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)
    return [(" " * indent + line if line.strip() else line) for line in text.splitlines(keepends=True)]


def _list_indent(lines: list[str]) -> int:
    """The indentation of the ``weights`` list's items (2 in the packaged manifest)."""
    for line in lines:
        match = re.match(r"^( *)- ", line)
        if match:
            return len(match.group(1))
    return 2


def _entry_span(lines: list[str], name: str, indent: int) -> tuple[int, int]:
    """The lines ``[start, end)`` of the list item named ``name``: up to the next item, comment at the items'
    indentation, or top-level key."""
    head = re.compile(rf"^ {{{indent}}}- name: *['\"]?{re.escape(name)}['\"]? *$")
    start = next(i for i, line in enumerate(lines) if head.match(line.rstrip("\n")))
    end = start + 1
    while end < len(lines):
        line = lines[end]
        stripped = line.lstrip(" ")
        if line.strip() and (len(line) - len(stripped) <= indent):
            break  # the next item, a comment at the items' level, or a top-level key
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the item separate it from what follows: they stay
    return start, end


def _list_end(lines: list[str]) -> int:
    """The line after the ``weights`` list: the next top-level key, or the end of the file."""
    start = next(i for i, line in enumerate(lines) if re.match(r"^weights *:", line))
    for i in range(start + 1, len(lines)):
        if re.match(r"^[^\s#-]", lines[i]):
            return i
    return len(lines)


def _replace(path: Path, text: str) -> None:
    """Validate ``text`` as a manifest, then replace ``path`` with it in one step (no half-written file)."""
    from derf_zoo.hub.manifest import load_manifest

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        load_manifest(staging)  # the fields and names derf_zoo checks on every load
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
