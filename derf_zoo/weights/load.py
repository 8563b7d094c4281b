"""Load weights of a foreign layout into a built model: map them through the layout, then load strictly."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from derf_zoo.norms.sites import is_norm
from derf_zoo.weights.layout import Layout
from derf_zoo.weights.state_dict import load_into

__all__ = ["fresh_norm_prefixes", "load_layout"]

#: The parameter names a norm site holds, by kind: LayerNorm (with or without affine), RMSNorm, DyT, Derf. A site
#: of the weights whose names are one of these but not the model's is a norm of another kind, not a damaged file.
_NORM_KINDS = (frozenset(), frozenset({"weight", "bias"}), frozenset({"weight"}),
               frozenset({"alpha", "weight", "bias"}), frozenset({"alpha", "shift", "weight", "bias"}))


def fresh_norm_prefixes(model: nn.Module, state_dict: Mapping[str, Tensor]) -> tuple[str, ...]:
    """Norm sites of ``model`` whose weights in ``state_dict`` are those of another kind of norm (LayerNorm
    weights imported into Derf, DyT or RMSNorm sites): they start fresh, since one norm's parameters do not carry
    over to another (``convert_norms(..., fit=...)`` fits them instead). A site whose weights are of no kind (a
    Derf site missing its ``alpha``) is not fresh: the strict load names what is missing."""
    fresh = []
    for name, module in model.named_modules():
        if not is_norm(module):
            continue
        ours = set(module.state_dict())
        theirs = {k[len(name) + 1:] for k in state_dict if k.startswith(name + ".")}
        if theirs != ours and theirs in _NORM_KINDS:
            fresh.append(name + ".")
    return tuple(fresh)


def load_layout(model: nn.Module, state_dict: Mapping[str, Tensor], layout: Layout | None, *, source: str,
                fresh_norms: bool = False, may_be_missing: tuple[str, ...] = ()) -> nn.Module:  # fmt: skip
    """Map ``state_dict`` from ``layout`` (None: already ours) and load it into ``model`` strictly.

    Keys the layout leaves to the model (``OursOnly``) may be absent; anything else missing, unexpected or
    misshapen raises and leaves the model untouched (``load_into``).

    Args:
        model: the target, built with the weights' architecture.
        state_dict: the weights, in ``layout``'s keys.
        layout: their layout, or None for derf_zoo's own keys.
        source: what messages call the weights.
        fresh_norms: an importer asked to build the model with another norm than the weights' (``norm=``): its
            norm sites whose weights are of another kind (:func:`fresh_norm_prefixes`) keep their fresh
            initialisation. Off for released weights, which must match their architecture exactly.
        may_be_missing: further key prefixes the weights need not have.

    Returns:
        ``model``.
    """
    sd = layout.to_ours(state_dict) if layout is not None else dict(state_dict)
    fresh = fresh_norm_prefixes(model, sd) if fresh_norms else ()
    if fresh:
        sd = {k: v for k, v in sd.items() if not k.startswith(fresh)}
    kept = layout.ours_only(model.state_dict()) if layout is not None else ()
    load_into(model, sd, source=source, may_be_missing=(*fresh, *kept, *may_be_missing))
    return model
