"""Learning-rate schedules stepped per optimizer step, described in epochs the way papers state them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from derf_zoo._validate import check_choice

__all__ = ["Schedule"]


@dataclass
class Schedule:
    """Linear warmup, then cosine decay to ``min_lr`` (or a constant / linear / polynomial decay), per step.

    Attributes:
        name: ``"cosine"``, ``"linear"`` (decay to ``min_lr``), ``"polynomial"`` (fairseq's ``polynomial_decay``:
            ``(1 - progress) ** power`` to ``min_lr``) or ``"constant"``.
        warmup_epochs: linear warmup from 0, in epochs (fractions allowed).
        min_lr: final learning rate (absolute, as in the paper's recipes: 1e-6).
        power: exponent of the polynomial decay (fairseq's default 1.0).
        warmup_steps: warmup in optimizer steps (fairseq's ``warmup_updates``); overrides ``warmup_epochs``.
    """

    name: Literal["cosine", "linear", "polynomial", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    power: float = 1.0
    warmup_steps: int | None = None

    def __post_init__(self) -> None:
        check_choice("schedule", self.name, ("cosine", "linear", "polynomial", "constant"))
        if self.warmup_epochs < 0 or self.min_lr < 0:
            raise ValueError(f"warmup_epochs and min_lr must be >= 0, got {self.warmup_epochs}, {self.min_lr}.")
        if self.power <= 0 or (self.warmup_steps is not None and self.warmup_steps < 0):
            raise ValueError(f"power must be > 0 and warmup_steps >= 0, got {self.power}, {self.warmup_steps}.")

    def build(self, optimizer: Optimizer, total_steps: int, steps_per_epoch: float) -> LambdaLR:
        """A per-step LambdaLR for ``total_steps`` optimizer steps.

        A parameter group with an ``lr_scale`` (layer-wise lr decay, :func:`derf_zoo.tasks.param_groups`) follows
        the schedule of its unscaled ``lr`` times ``lr_scale``, ``min_lr`` and warmup included: what timm's
        schedulers do (``param_group["lr"] = value * param_group["lr_scale"]``). ``lr`` must be the unscaled rate
        when this is called (as the optimizer's ``init_args`` give it).
        """
        warmup = self.warmup_steps if self.warmup_steps is not None else round(self.warmup_epochs * steps_per_epoch)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        scales = [g.get("lr_scale", 1.0) for g in optimizer.param_groups]

        def factor(step: int, base_lr: float) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if self.name == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            if self.name == "cosine":
                shape = 0.5 * (1 + math.cos(math.pi * progress))
            else:
                shape = (1 - progress) ** (self.power if self.name == "polynomial" else 1.0)
            floor = min(self.min_lr / base_lr, 1.0) if base_lr > 0 else 0.0
            return floor + (1 - floor) * shape

        return LambdaLR(optimizer, [lambda s, lr=lr, k=k: k * factor(s, lr) for lr, k in zip(base_lrs, scales)])
