"""Which modules are norms, which norm site each fills, and per-site statistics of the point-wise ones.

One place for what a family, the converter, the model card, the demo and the NormStats callback all ask.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from derf_zoo.norms.layers import Identity, LayerNorm, PointwiseNorm, RMSNorm

__all__ = ["is_norm", "is_rms_like", "pointwise_sites", "site_alphas", "tag_site"]


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
