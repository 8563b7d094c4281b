"""Strict weight loading: every key and shape checked before anything is written into the model."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["WeightsMismatchError", "load_into", "read_safetensors", "read_safetensors_metadata", "save_weights"]


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


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header (without reading its tensors)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsMismatchError(f"Cannot read {path} as safetensors ({err}); the file is corrupted or truncated. "
                                   "Delete it and download it again.") from err  # fmt: skip


def save_weights(model: nn.Module, path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write ``model``'s weights as safetensors (shared tensors handled) with ``metadata``, reproducibly.

    safetensors writes its metadata in hash order, which would make two saves of the same weights differ in
    bytes and so in sha256. The header is rewritten with sorted keys: the same text reordered, so its length
    and every tensor offset stay as they are.
    """
    from safetensors.torch import save_model

    save_model(model, str(path), metadata={"format": "pt", **metadata})
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        raw = f.read(size)
        header = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(header) <= size:  # always, for safetensors' compact JSON; else keep its own order
            f.seek(8)
            f.write(header + b" " * (size - len(header)))


def _classifier_keys(model: nn.Module) -> tuple[str, ...]:
    """The classifier's weight keys, where the model declares one (timm's ``pretrained_cfg["classifier"]``)."""
    name = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    return (f"{name}.weight", f"{name}.bias") if name else ()


def load_into(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str,
              may_be_missing: tuple[str, ...] = ()) -> None:
    """Load ``state_dict`` into ``model`` strictly, or raise listing every problem and leave the model untouched.

    Two differences are allowed, both asked for by the caller: the classifier, when the weights have another
    number of classes than the model (``num_classes=``), keeps its fresh initialisation and a warning says so,
    as timm does; and keys under the ``may_be_missing`` prefixes may be absent from the weights (a model
    imported with another norm keeps its fresh norms).

    Args:
        model: the target.
        state_dict: the weights.
        source: where they come from (for messages).
        may_be_missing: key prefixes the weights need not have.
    """
    given = dict(state_dict)  # keys of another layout are mapped before (derf_zoo.weights), never here
    target = model.state_dict()
    head = _classifier_keys(model)
    skipped_head = []
    if head and head[0] in given and head[0] in target and given[head[0]].shape != target[head[0]].shape:
        (w_out, *w_in), (m_out, *m_in) = given[head[0]].shape, target[head[0]].shape
        if w_in != m_in:  # another feature width is another architecture, not another label set
            raise WeightsMismatchError(
                f"{source} does not fit {type(model).__name__}; nothing was loaded.\n  the classifier "
                f"{head[0]!r} takes {tuple(w_in)} features in the weights but {tuple(m_in)} in the model "
                f"(weights {tuple(given[head[0]].shape)} vs model {tuple(target[head[0]].shape)}).")  # fmt: skip
        skipped_head = [k for k in head if k in given and k in target and given[k].shape != target[k].shape]
        warnings.warn(f"{source}: the classifier has {w_out} classes in the weights and {m_out} in the model; "
                      f"the head {head[0].rsplit('.', 1)[0]!r} is freshly initialised (train or fine-tune it).",
                      stacklevel=3)  # fmt: skip
        given = {k: v for k, v in given.items() if k not in skipped_head}
    absent = [k for k in target if k not in given and k not in skipped_head]
    missing = [k for k in absent if not (may_be_missing and k.startswith(may_be_missing))]
    unexpected = [k for k in given if k not in target]
    mismatched = [f"{k}: weights {tuple(given[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in given if k in target and given[k].shape != target[k].shape]  # fmt: skip
    # A float weight may arrive in another float precision (bf16 checkpoints); an integer or bool tensor where
    # the model holds floats (or the reverse) is not a weight of this model and is never cast.
    wrong_kind = [f"{k}: {given[k].dtype} in the weights vs {target[k].dtype} in the model" for k in given
                  if k in target and given[k].is_floating_point() != target[k].is_floating_point()]  # fmt: skip
    if missing or unexpected or mismatched or wrong_kind:
        lines = [f"{source} does not fit {type(model).__name__}; nothing was loaded."]
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
            ("dtype mismatches", wrong_kind),
        ):
            if items:
                shown = ", ".join(items[:12]) + (f", ... ({len(items)} in all)" if len(items) > 12 else "")
                lines.append(f"  {label}: {shown}")
        raise WeightsMismatchError("\n".join(lines))
    with torch.no_grad():
        model.load_state_dict({k: v.to(target[k].dtype) for k, v in given.items()}, strict=not (skipped_head or absent))
