"""Learning-rate schedules stepped per optimizer step, described in epochs the way papers state them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["Schedule"]


@dataclass
class Schedule:
    """Linear warmup, then cosine decay to ``min_lr`` (or a constant / linear decay), per step.

    Attributes:
        name: ``"cosine"``, ``"linear"`` (decay to ``min_lr``) or ``"constant"``.
        warmup_epochs: linear warmup from 0, in epochs (fractions allowed).
        min_lr: final learning rate (absolute, as in the paper's recipes: 1e-6).
    """

    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ("cosine", "linear", "constant"):
            raise ValueError(f"Unknown schedule {self.name!r}; valid: cosine, linear, constant.")
        if self.warmup_epochs < 0 or self.min_lr < 0:
            raise ValueError(f"warmup_epochs and min_lr must be >= 0, got {self.warmup_epochs}, {self.min_lr}.")

    def build(self, optimizer: Optimizer, total_steps: int, steps_per_epoch: float) -> LambdaLR:
        """A per-step LambdaLR for ``total_steps`` optimizer steps."""
        warmup = round(self.warmup_epochs * steps_per_epoch)
        base_lrs = [g["lr"] for g in optimizer.param_groups]

        def factor(step: int, base_lr: float) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if self.name == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.name == "cosine" else 1 - progress
            floor = min(self.min_lr / base_lr, 1.0) if base_lr > 0 else 0.0
            return floor + (1 - floor) * shape

        return LambdaLR(optimizer, [lambda s, lr=lr: factor(s, lr) for lr in base_lrs])
