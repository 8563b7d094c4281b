"""What a forward pass keeps for its backward: bytes of the tensors autograd saves, parameters excluded."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["kept_activation_bytes", "param_ptrs"]


def param_ptrs(*modules: nn.Module) -> set[int]:
    """Storage addresses of the parameters of ``modules`` (what :func:`kept_activation_bytes` leaves out)."""
    return {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}


def kept_activation_bytes(fn: Callable[[], Tensor], params: set[int]) -> int:
    """Bytes autograd keeps for the backward of ``fn()``: distinct storages, those in ``params`` excluded.

    Read through ``torch.autograd.graph.saved_tensors_hooks``: every tensor saved for the backward is packed once;
    views of one storage count once.
    """
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())
