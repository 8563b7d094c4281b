"""Checks every command makes before it starts work: a device that exists, outputs that can be written.

A command that samples or encodes for minutes must fail on a bad ``--device`` or ``--out`` before the first step,
not after it with a traceback.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

__all__ = ["as_flags", "check_device", "check_writable"]


def check_device(device: str) -> str:
    """``device`` if torch can run on it here; ValueError naming ``--device`` and what is available otherwise."""
    from derf_zoo.devices import check_device as check

    return check(device, "--device")


def as_flags(message: str, names: dict[str, str]) -> str:
    """A library message in a command's words: each argument spelling in ``names`` (``"cfg_scale"``,
    ``"skip_invalid=True"``) replaced by its flag (``"--cfg-scale"``, ``"--skip-invalid"``), whole words only."""
    for name, flag in names.items():
        message = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w])", flag, message)
    return message


def check_writable(*files: Path, option: str = "--out") -> None:
    """Raise ValueError unless each of ``files`` can be created (or replaced) where it is named.

    The nearest existing folder above each file must be a folder (not a file) that accepts a new file; a probe
    file is created there and removed, which is the only honest test (permissions, read-only mounts, root).
    """
    for path in files:
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; name a file in it instead.")
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise ValueError(f"{option} {path}: {parent} is a file, not a folder; choose another path.")
        try:
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as err:
            raise ValueError(f"{option} {path}: cannot write into {parent} ({err.strerror or err}); choose a "
                             "writable folder.") from None
