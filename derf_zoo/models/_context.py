"""The context-length check of sequence models, shared by the models (HyenaDNA) and the DNA tasks."""

from __future__ import annotations

from torch import nn

__all__ = ["check_context"]


def check_context(model: nn.Module, length: int, max_len: int | None = None) -> None:
    """Refuse inputs longer than the context with a ValueError naming both numbers.

    Args:
        model: the network; its ``max_seq_len`` attribute is the context unless ``max_len`` is given (None or
            absent: no limit).
        length: tokens per input row.
        max_len: a tighter limit set by the caller (a task's ``max_len``), used instead of ``max_seq_len``.
    """
    limit = max_len if max_len is not None else getattr(model, "max_seq_len", None)
    if limit is not None and length > limit:
        name = "max_len" if max_len is not None else "max_seq_len"
        raise ValueError(f"Inputs of {length} tokens are longer than the model's context of {limit} tokens "
                         f"({name}={limit}); use windows of at most {limit} (the DataModule's seq_len / max_length)"
                         + (" or build the model with a larger max_seq_len." if max_len is None else "."))
