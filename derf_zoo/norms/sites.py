"""Which modules are norms, which norm site each fills, and per-site statistics of the point-wise ones.

One place for what a family, the converter, the model card, the demo and the NormStats callback all ask.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from derf_zoo.norms.layers import Identity, LayerNorm, PointwiseNorm, RMSNorm

__all__ = ["is_norm", "is_rms_like", "pointwise_sites", "saturation_by_site", "site_alphas", "tag_site"]


def tag_site(norm: nn.Module, site: str) -> nn.Module:
    """Record which norm site a layer fills (``attn``, ``mlp``, ``final``, ...); statistics are grouped by it."""
    norm.norm_site = site
    return norm


def is_rms_like(module: nn.Module) -> bool:
    """An RMSNorm of torch, timm, transformers (``LlamaRMSNorm``, ...) or ours.

    RMSNorm has no common base class across libraries, so like the official Derf DNA code this matches the
    class name, and also requires a 1-D weight so nothing unrelated matches.
    """
    if isinstance(module, (nn.RMSNorm, RMSNorm)):
        return True
    weight = getattr(module, "weight", None)
    return "rmsnorm" in type(module).__name__.lower() and (weight is None or weight.dim() == 1)


def is_norm(module: nn.Module) -> bool:
    """A layer of the norm slot (any registered norm) or a LayerNorm / RMSNorm of torch, timm or transformers.

    BatchNorm, GroupNorm and InstanceNorm are not: they normalise data, not the residual stream.
    """
    return isinstance(module, (PointwiseNorm, LayerNorm, Identity, nn.LayerNorm)) or is_rms_like(module)


def pointwise_sites(model: nn.Module) -> dict[str, list[PointwiseNorm]]:
    """The point-wise norms of ``model`` grouped by site (their qualified name where no site was tagged)."""
    groups: dict[str, list[PointwiseNorm]] = defaultdict(list)
    for name, module in model.named_modules():
        if isinstance(module, PointwiseNorm):
            groups[getattr(module, "norm_site", name)].append(module)
    return dict(groups)


def site_alphas(model: nn.Module) -> dict[str, float]:
    """Mean alpha per site (``{"attn": 0.61, "mlp": 0.42, "final": 0.9}``); empty for a model without point-wise
    norms."""
    return {site: float(torch.cat([m.alpha.detach().float().flatten() for m in layers]).mean())
            for site, layers in pointwise_sites(model).items()}  # fmt: skip


@torch.no_grad()
def saturation_by_site(model: nn.Module, forward: Callable[[nn.Module], Any], threshold: float = 2.0
                       ) -> dict[str, float]:  # fmt: skip
    """Per site, the fraction of the point-wise norms' inputs with ``|alpha * x + shift| > threshold`` during one call
    of ``forward(model)``, where erf and tanh are flat and pass almost no gradient.

    The sites come in the order the stream passes them last, so the final entry is the site of the last point-wise
    norm the stream goes through (the ``final`` site of a pre-norm model): the one that traps a narrow model when it
    saturates (issue 18). Empty for a model without point-wise norms. The model's train/eval mode is left as is.
    """
    counts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    last_call: dict[str, int] = {}
    tick = itertools.count()

    def record(site: str, layer: PointwiseNorm, x: torch.Tensor) -> None:
        u = layer.alpha * x.float()
        if layer.shift is not None:
            u = u + layer.shift
        counts[site][0] += float((u.abs() > threshold).sum())
        counts[site][1] += u.numel()
        last_call[site] = next(tick)

    hooks = [layer.register_forward_pre_hook(lambda mod, args, s=site: record(s, mod, args[0]))
             for site, layers in pointwise_sites(model).items() for layer in layers]  # fmt: skip
    try:
        forward(model)
    finally:
        for h in hooks:
            h.remove()
    return {site: counts[site][0] / max(counts[site][1], 1.0) for site in sorted(last_call, key=last_call.get)}
