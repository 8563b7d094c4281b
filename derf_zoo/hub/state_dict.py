"""Strict weight loading: every key and shape checked before anything is written into the model."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["WeightsMismatchError", "load_into", "read_safetensors"]


class WeightsMismatchError(ValueError):
    """The weights do not fit the model (missing/unexpected keys, other shapes, unreadable file)."""


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """Read a safetensors file (never a pickle), with an error that names the file if it is corrupted."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsMismatchError(f"Cannot read {path} as safetensors ({err}); the file is corrupted or truncated. "
                                   "Delete it and download it again.") from err  # fmt: skip


def _classifier_keys(model: nn.Module) -> tuple[str, ...]:
    name = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head")
    return (f"{name}.weight", f"{name}.bias")


def load_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str,
              key_map: Callable[[str], str] | None = None, may_be_missing: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Load ``state_dict`` into ``model`` strictly, or raise listing every problem and leave the model untouched.

    Two differences are allowed, both asked for by the caller: the classifier, when the weights have another
    number of classes than the model (``num_classes=``), keeps its fresh initialisation and a warning says so,
    as timm does; and keys under the ``may_be_missing`` prefixes may be absent from the weights (a model
    imported with another norm keeps its fresh norms).

    Args:
        model: the target.
        state_dict: the weights.
        source: where they come from (for messages).
        key_map: renames the weights' keys to the model's (e.g. timm ViT -> derf_zoo).
        may_be_missing: key prefixes the weights need not have.
    """
    given = {key_map(k) if key_map else k: v for k, v in state_dict.items()}
    target = model.state_dict()
    head = _classifier_keys(model)
    skipped_head = [k for k in head if k in given and k in target and given[k].shape != target[k].shape]
    if skipped_head:
        warnings.warn(f"{source}: the classifier has {given[head[0]].shape[0]} classes in the weights and "
                      f"{target[head[0]].shape[0]} in the model; the head {head[0].rsplit('.', 1)[0]!r} is freshly "
                      "initialised (train or fine-tune it).", stacklevel=3)  # fmt: skip
        given = {k: v for k, v in given.items() if k not in skipped_head}
    absent = [k for k in target if k not in given and k not in skipped_head]
    missing = [k for k in absent if not (may_be_missing and k.startswith(may_be_missing))]
    unexpected = [k for k in given if k not in target]
    mismatched = [f"{k}: weights {tuple(given[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in given if k in target and given[k].shape != target[k].shape]  # fmt: skip
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit {type(model).__name__}; nothing was loaded."]
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                lines.append(f"  {label}: {shown}")
        raise WeightsMismatchError("\n".join(lines))
    with torch.no_grad():
        model.load_state_dict({k: v.to(target[k].dtype) for k, v in given.items()}, strict=not (skipped_head or absent))
