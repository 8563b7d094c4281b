"""A checksum of the state a checkpoint saves, so that a resume can tell a damaged file from a good one.

``torch.load`` notices a truncated file, but not flipped bytes inside a tensor: a checkpoint whose AdamW
``exp_avg`` was corrupted on disk (or in a copy) resumes without a word and trains on from the damage. The task
records a sha256 of each saved section (:data:`SECTIONS`) under :data:`CHECKSUM_KEY` when it saves and checks it
when it loads, before Lightning restores the weights and the optimizer from the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["CHECKSUM_KEY", "SECTIONS", "CorruptCheckpointError", "record_checksum", "verify_checksum"]

CHECKSUM_KEY = "derf_zoo_checksum"
#: the parts of a Lightning checkpoint that hold training state: the weights (with an EMA, the averaged ones),
#: the optimizer and scheduler states, and the raw weights and averaging state of Lightning's weight averaging.
SECTIONS = ("state_dict", "optimizer_states", "lr_schedulers", "current_model_state", "averaging_state")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's saved state does not match the checksum recorded in it."""


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` in a deterministic order: mappings by sorted key, sequences in order, tensors by dtype,
    shape and raw bytes (bit-exact, also for bfloat16 and on any device), anything else by ``repr``."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        h.update(f"M{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(f"K{key!r}".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:  # numbers, strings, None: what optimizer param groups and scheduler states hold
        h.update(f"V{value!r}".encode())


def section_digests(checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """sha256 (hex) of each of :data:`SECTIONS` that ``checkpoint`` holds."""
    digests = {}
    for section in SECTIONS:
        if section in checkpoint:
            h = hashlib.sha256()
            _feed(h, checkpoint[section])
            digests[section] = h.hexdigest()
    return digests


def record_checksum(checkpoint: dict[str, Any]) -> None:
    """Store the digests of the sections ``checkpoint`` holds under :data:`CHECKSUM_KEY` (call it last)."""
    checkpoint[CHECKSUM_KEY] = {"algorithm": "sha256", "sections": section_digests(checkpoint)}


def verify_checksum(checkpoint: Mapping[str, Any], source: str | None = None) -> bool:
    """Check the digests recorded in ``checkpoint``; False when it records none (a file from before checksums).

    Args:
        checkpoint: the loaded checkpoint.
        source: the file it was read from, for the error message.

    Raises:
        CorruptCheckpointError: a recorded section is missing or its bytes differ, naming the file and the sections.
    """
    recorded = checkpoint.get(CHECKSUM_KEY)
    if not recorded:
        return False
    expected = recorded.get("sections", {})
    actual = section_digests({k: checkpoint[k] for k in expected if k in checkpoint})
    bad = [s for s in expected if actual.get(s) != expected[s]]
    if bad:
        what = ", ".join(f"{s} ({'missing' if s not in actual else 'bytes differ'})" for s in bad)
        raise CorruptCheckpointError(
            f"Checkpoint {source or '(given as a dict)'} is corrupted: the {recorded.get('algorithm', 'sha256')} of "
            f"its saved state does not match the checksum written with it, in {what}. Do not resume from it: use an "
            "older checkpoint of the run (--ckpt_path PATH), or start again (--overwrite)."
        )
    return True
