"""Watch the point-wise norms while training: alpha, shift and how much of each layer's input saturates."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import lightning as L
import torch

from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.norms.sites import pointwise_sites

__all__ = ["NormStats"]


class NormStats(L.Callback):
    """Log per norm site the mean/min/max of ``alpha`` and ``shift`` and the saturated fraction of inputs.

    A point-wise norm saturates where ``|alpha * x + shift| > threshold`` (erf and tanh are flat beyond
    about 2): there its gradient vanishes. This is the first thing to look at when a normalization-free
    model does not converge (alpha collapsing to 0, or most activations saturated).

    Sites come from the backbone (``attn``, ``mlp``, ``final``); norms of other models are grouped by
    their qualified name. Logged as ``norm/<site>/alpha_mean`` etc. every ``every_n_steps`` steps.

    Args:
        every_n_steps: logging interval in optimizer steps.
        threshold: ``|alpha * x + shift|`` above which an activation counts as saturated.
    """

    def __init__(self, every_n_steps: int = 50, threshold: float = 2.0) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self._hooks: list[Any] = []
        self._saturation: dict[str, list[float]] = defaultdict(list)

    def _record(self, site: str, layer: PointwiseNorm, x: torch.Tensor) -> None:
        with torch.no_grad():
            u = layer.alpha * x.detach().float()
            if layer.shift is not None:
                u = u + layer.shift
            self._saturation[site].append((u.abs() > self.threshold).float().mean().item())

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        for site, layers in pointwise_sites(pl_module).items():
            for layer in layers:
                hook = layer.register_forward_pre_hook(lambda mod, args, s=site: self._record(s, mod, args[0]))
                self._hooks.append(hook)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._hooks:
            return
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        metrics = {}
        for site, layers in pointwise_sites(pl_module).items():
            alphas = torch.cat([m.alpha.detach().float() for m in layers])
            metrics[f"norm/{site}/alpha_mean"] = alphas.mean()
            metrics[f"norm/{site}/alpha_min"] = alphas.min()
            metrics[f"norm/{site}/alpha_max"] = alphas.max()
            shifts = [m.shift.detach().float() for m in layers if m.shift is not None]
            if shifts:
                shifts_t = torch.cat(shifts)
                metrics[f"norm/{site}/shift_mean"] = shifts_t.mean()
                metrics[f"norm/{site}/shift_min"] = shifts_t.min()
                metrics[f"norm/{site}/shift_max"] = shifts_t.max()
            if self._saturation.get(site):
                metrics[f"norm/{site}/saturated"] = torch.tensor(
                    sum(self._saturation[site]) / len(self._saturation[site])
                )
        self._saturation.clear()
        for key, value in metrics.items():
            pl_module.log(key, value, on_step=True, on_epoch=False)
