"""Classifier-free guidance (Ho & Salimans 2022) as a model wrapper the samplers call like the model."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ClassifierFreeGuidance"]


class ClassifierFreeGuidance(nn.Module):
    """``model(x, t, y)`` -> the output with guided epsilon ``uncond + scale * (cond - uncond)``.

    The conditional and unconditional (null-class) passes run as one doubled batch, as the official DiT sampler
    does. The variance channels (``learn_sigma``) are the conditional pass's. ``scale=1`` is the plain
    conditional model (the Derf paper's FID setting); DiT's pictures use 4.0, its FID-50K 1.5.

    Args:
        model: a class-conditional denoiser ``model(x, t, y)`` with a null class (a :class:`~derf_zoo.models.DiT`
            trained with label dropout).
        scale: guidance scale.
        null_class: the null label (default: ``model.num_classes``).
        guided_channels: how many leading output channels are epsilon (default: the input's channels; the
            official DiT guides 3 of 4 "for exact reproducibility").
    """

    def __init__(self, model: nn.Module, scale: float, null_class: int | None = None,
                 guided_channels: int | None = None) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.scale = float(scale)
        if not math.isfinite(self.scale):  # inf * (cond - uncond) is NaN wherever the two agree
            raise ValueError(f"The guidance scale must be a finite number, got {scale!r}.")
        self.null_class = int(model.num_classes if null_class is None else null_class)
        self.guided_channels = guided_channels

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        if self.scale == 1.0:
            return self.model(x, t, y)
        n = x.shape[0]
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_class)]))
        cond, uncond = out[:n], out[n:]
        k = x.shape[1] if self.guided_channels is None else self.guided_channels
        guided = uncond[:, :k] + self.scale * (cond[:, :k] - uncond[:, :k])
        return torch.cat([guided, cond[:, k:]], dim=1)
