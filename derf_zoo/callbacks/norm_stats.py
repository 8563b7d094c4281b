"""Watch the point-wise norms while training: alpha, shift, how much of each site's input saturates, the gradient
that reaches it, and a warning when a site is trapped in saturation."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from derf_zoo._validate import check_int, is_real
from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.norms.sites import pointwise_sites

__all__ = ["NormStats"]


class NormStats(L.Callback):
    """Log per norm site the mean/min/max of ``alpha`` and ``shift``, the saturated fraction of inputs and the
    gradient reaching them; warn once per site when the site is trapped in saturation.

    A point-wise norm saturates where ``|alpha * x + shift| > threshold`` (erf and tanh are flat beyond
    about 2): there its gradient vanishes. This is the first thing to look at when a normalization-free
    model does not converge (alpha collapsing to 0, or most activations saturated).

    The trap (issue 18): a narrow model's quickest early loss decrease can be to grow its residual stream until the
    final norm saturates; then no gradient passes it, the loss sits at the base rate and nothing says why. So when a
    site's saturated fraction stays above ``warn_saturated`` for ``warn_patience`` logged steps in a row while the
    gradient reaching its input has fallen below ``warn_grad_drop`` of the largest seen so far, a warning names the
    site and the step (once per site).

    Sites come from the backbone (``attn``, ``mlp``, ``final``); norms of other models are grouped by
    their qualified name. Logged as ``norm/<site>/alpha_mean``, ``norm/<site>/saturated``,
    ``norm/<site>/input_grad`` (root mean square of the gradient of the site's input) etc. every ``every_n_steps``
    steps.

    Args:
        every_n_steps: logging interval in optimizer steps.
        threshold: ``|alpha * x + shift|`` above which an activation counts as saturated.
        warn_saturated: saturated fraction above which a site can trip the warning.
        warn_grad_drop: the warning also needs the input gradient below this fraction of its peak.
        warn_patience: logged steps in a row that must meet both conditions.
    """

    def __init__(self, every_n_steps: int = 50, threshold: float = 2.0, warn_saturated: float = 0.9,
                 warn_grad_drop: float = 0.1, warn_patience: int = 2) -> None:  # fmt: skip
        check_int("every_n_steps", every_n_steps, 1, owner="NormStats")
        check_int("warn_patience", warn_patience, 1, owner="NormStats")
        for name, value, low, high in (("threshold", threshold, 0.0, math.inf),
                                       ("warn_saturated", warn_saturated, 0.0, 1.0),
                                       ("warn_grad_drop", warn_grad_drop, 0.0, 1.0)):  # fmt: skip
            if not is_real(value) or not low < value <= high:
                raise ValueError(f"{name} must be a number in ({low}, {high}], got {value!r}.")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.warn_saturated, self.warn_grad_drop, self.warn_patience = warn_saturated, warn_grad_drop, warn_patience
        self._hooks: list[Any] = []
        self._saturation: dict[str, list[float]] = defaultdict(list)
        self._grads: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._peak_grad: dict[str, float] = {}
        self._strikes: dict[str, int] = defaultdict(int)
        self._step = 0
        #: sites already warned about, with the step of the warning
        self.warned: dict[str, int] = {}

    def _record(self, site: str, layer: PointwiseNorm, x: torch.Tensor) -> None:
        with torch.no_grad():
            u = layer.alpha * x.detach().float()
            if layer.shift is not None:
                u = u + layer.shift
            self._saturation[site].append((u.abs() > self.threshold).float().mean().item())
        if x.requires_grad:  # the gradient that reaches the site's input: what a saturated site stops passing
            x.register_hook(lambda g, s=site: self._grads[s].append(g.detach().float().pow(2).mean().sqrt()))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        self._step = trainer.global_step  # the step of this batch (global_step has moved on by its end)
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
            saturated = grad = None
            if self._saturation.get(site):
                saturated = sum(self._saturation[site]) / len(self._saturation[site])
                metrics[f"norm/{site}/saturated"] = torch.tensor(saturated)
            if self._grads.get(site):
                grad = float(torch.stack(self._grads[site]).mean())
                metrics[f"norm/{site}/input_grad"] = torch.tensor(grad)
            if saturated is not None and grad is not None:
                self._check_trap(site, saturated, grad, self._step)
        self._saturation.clear()
        self._grads.clear()
        for key, value in metrics.items():
            pl_module.log(key, value, on_step=True, on_epoch=False)

    def _check_trap(self, site: str, saturated: float, grad: float, step: int) -> None:
        peak = self._peak_grad[site] = max(self._peak_grad.get(site, 0.0), grad)
        trapped = saturated > self.warn_saturated and grad < self.warn_grad_drop * peak
        self._strikes[site] = self._strikes[site] + 1 if trapped else 0
        if self._strikes[site] < self.warn_patience or site in self.warned:
            return
        self.warned[site] = step
        rank_zero_warn(
            f"NormStats: norm site {site!r} is trapped in saturation at global step {step}: {100 * saturated:.0f}% of "
            f"its inputs have |alpha * x + shift| > {self.threshold:g} and the gradient reaching it fell to {grad:.2e} "
            f"({100 * grad / peak:.2g}% of its peak {peak:.2e}) for {self.warn_patience} logged steps in a row. Past "
            "this point the site passes almost no gradient and the loss tends to stay where it is. Give the site a "
            f"smaller alpha (norm: {{{site}: derf(alpha=0.1)}}) or, for a narrow model with a tied head, a larger "
            "embedding init (embed_init_std) (issue 18)."
        )  # fmt: skip
