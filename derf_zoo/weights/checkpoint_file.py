"""Reading an upstream's weights file without unpickling code: a ``.safetensors`` file, a bare state dict, or a
training checkpoint of the official code (ConvNeXt-style ViT ``checkpoint-N.pth`` = {``model``, ``model_ema``,
``optimizer``, ``scaler``, ``epoch``, ``args``}; DiT ``NNNNNNN.pt`` = {``model``, ``ema``, ``opt``, ``args``}).

Those training checkpoints pickle their command line as an ``argparse.Namespace`` under ``args``, so a plain
``torch.load(path, weights_only=True)`` refuses them. Here they are read weights-only with ``argparse.Namespace``
as the one extra allowed class (scoped to the read: nothing else is unpickled, and the allowance is gone after).
Which network a checkpoint holds several of (raw, EMA) is the importer's choice, following the upstream's own
evaluation: :func:`pick_network` takes the order and reports the key it used.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["NETWORK_KEYS", "checkpoint_args", "pick_network", "read_checkpoint_file", "read_weights"]

#: Where training checkpoints keep a network, in the order a reader that knows nothing better tries them.
NETWORK_KEYS = ("model_ema", "ema", "model", "state_dict")


def read_checkpoint_file(path: str | Path, *, who: str = "weights") -> Any:
    """The object stored in ``path``: a ``.safetensors`` file's tensors, or a torch file read with
    ``weights_only=True`` and ``argparse.Namespace`` allowed.

    Args:
        path: the file.
        who: what is reading it, for messages (``"from_timm"``, ``"teacher"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that holds more than tensors, plain data and an ``argparse.Namespace`` (a pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{who}: no weights file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError and friends: something other than plain tensors and data
        raise ValueError(f"{who}: cannot read {path} with weights_only=True (argparse.Namespace allowed) ({err}); "
                         "convert it to safetensors from a trusted environment.") from err  # fmt: skip


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def pick_network(obj: Any, prefer: Sequence[str] = NETWORK_KEYS, *, where: str = "the checkpoint",
                 who: str = "weights") -> tuple[dict[str, Tensor], str | None]:  # fmt: skip
    """The state dict of the network in a loaded checkpoint, and the key it was under.

    Args:
        obj: what :func:`read_checkpoint_file` returned.
        prefer: the keys to try, in order; the first holding a non-empty mapping wins.
        where: the checkpoint, for messages.
        who: the reader, for messages.

    Returns:
        ``(state_dict, key)``; ``key`` is None when ``obj`` is itself a state dict.

    Raises:
        ValueError: none of ``prefer`` holds a state dict and ``obj`` is none either.
    """
    if isinstance(obj, Mapping):
        for key in prefer:
            if isinstance(obj.get(key), Mapping) and obj[key]:
                return dict(obj[key]), key
    if _is_state_dict(obj):
        return dict(obj), None
    held = f" (it holds {', '.join(map(repr, obj))})" if isinstance(obj, Mapping) else ""
    raise ValueError(f"{who}: {where} holds no state dict (looked for {', '.join(prefer)}){held}.")


def checkpoint_args(obj: Any) -> dict[str, Any]:
    """The training arguments an official checkpoint stores under ``args`` (an ``argparse.Namespace`` or a dict),
    as a dict; empty when there are none."""
    args = obj.get("args") if isinstance(obj, Mapping) else None
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else {}


def read_weights(path: str | Path, prefer: Sequence[str] = NETWORK_KEYS, *, who: str = "weights") -> dict[str, Tensor]:
    """A state dict from a file, never unpickling code (see :func:`read_checkpoint_file`); a training
    checkpoint's network is the first of ``prefer`` it holds.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that is not weights-only loadable, or holds no state dict.
    """
    return pick_network(read_checkpoint_file(path, who=who), prefer, where=str(path), who=who)[0]
