"""Checks every command makes before it starts work: a device that exists, outputs that can be written.

A command that samples or encodes for minutes must fail on a bad ``--device`` or ``--out`` before the first step,
not after it with a traceback.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

__all__ = ["check_device", "check_writable"]


def check_device(device: str) -> str:
    """``device`` if torch can run on it here; ValueError naming it and what is available otherwise."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device {device!r} is not a device torch knows ({err}); use cpu or cuda[:N].") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu.")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}.")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu.")
    return device


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
