"""Load weights of a foreign layout into a built model: map them through the layout, then load strictly."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from derf_zoo.hub.state_dict import load_into
from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.norms.sites import is_norm
from derf_zoo.weights.layout import Layout

__all__ = ["fresh_norm_prefixes", "load_layout"]


def fresh_norm_prefixes(model: nn.Module, state_dict: Mapping[str, Tensor]) -> tuple[str, ...]:
    """Point-wise norm sites (Derf, DyT, ...) whose weights hold none of their own (no ``alpha``): LayerNorm
    weights imported into a point-wise model. They start fresh, since a LayerNorm's weight and bias do not carry
    over (``convert_norms(..., fit=...)`` fits them instead)."""
    return tuple(name + "." for name, m in model.named_modules()
                 if is_norm(m) and isinstance(m, PointwiseNorm) and name + ".alpha" not in state_dict)  # fmt: skip


def load_layout(model: nn.Module, state_dict: Mapping[str, Tensor], layout: Layout | None, *, source: str,
                may_be_missing: tuple[str, ...] = ()) -> nn.Module:  # fmt: skip
    """Map ``state_dict`` from ``layout`` (None: already ours) and load it into ``model`` strictly.

    Keys the layout leaves to the model (``OursOnly``) and fresh point-wise norm sites may be absent; anything
    else missing, unexpected or misshapen raises and leaves the model untouched (``load_into``).

    Returns:
        ``model``.
    """
    sd = layout.to_ours(state_dict) if layout is not None else dict(state_dict)
    fresh = fresh_norm_prefixes(model, sd)
    if fresh:
        sd = {k: v for k, v in sd.items() if not k.startswith(fresh)}
    kept = layout.ours_only(model.state_dict()) if layout is not None else ()
    load_into(model, sd, source=source, may_be_missing=(*fresh, *kept, *may_be_missing))
    return model
