"""Class-conditional diffusion on the task contract: DiT's training loss (epsilon MSE + VLB for the variance).

The network is called as ``model(x_t, t, y)``; the process is :func:`derf_zoo.diffusion.create_diffusion`'s
(1000-step linear schedule, epsilon prediction, learned-range variance when the model has ``learn_sigma``).
Validation reports the same loss over the held-out images with noise and timesteps drawn from a fixed seed per
batch, so every epoch (and every norm) is scored on identical draws: an estimate of the expected diffusion loss,
not a sample-quality metric such as FID.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo.diffusion import GaussianDiffusion, create_diffusion
from derf_zoo.tasks.base import MetricSpec, NonFinite, Task
from derf_zoo.tasks.schedules import Schedule

__all__ = ["Diffusion"]


def _draws(diffusion: GaussianDiffusion, x: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Timesteps (uniform over the process) and Gaussian noise for a batch; from ``generator`` when given."""
    n = x.shape[0]
    if generator is None:
        return torch.randint(0, diffusion.num_timesteps, (n,), device=x.device), torch.randn_like(x)
    t = torch.randint(0, diffusion.num_timesteps, (n,), generator=generator)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return t.to(x.device), noise.to(x.device)


class Diffusion(Task):
    """Train and evaluate a class-conditional denoiser (DiT) with the Gaussian diffusion loss.

    Args:
        model / model_args / optimizer / schedule / calibration_target / nonfinite(_max_*): see :class:`Task`.
        diffusion_steps: steps of the training process (DiT: 1000).
        noise_schedule: ``"linear"`` (DiT) or ``"squaredcos_cap_v2"``.
        eval_seed: seed of the validation draws (timesteps and noise; batch ``i`` uses ``eval_seed + i``).
    """

    task_type = "unconditional-image-generation"
    metrics = (
        MetricSpec("loss", higher_is_better=False,
                   description="diffusion loss (epsilon MSE + VLB) on held-out images, fixed noise and timesteps"),
        MetricSpec("mse", higher_is_better=False, description="epsilon-prediction MSE of the same draws"),
    )  # fmt: skip

    def __init__(
        self,
        model: str | nn.Module = "dit_nano_derf",
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        diffusion_steps: int = 1000,
        noise_schedule: str = "linear",
        eval_seed: int = 0,
        calibration_target: float = 1.0,
        nonfinite: NonFinite = "error",
        nonfinite_max_fraction: float = 0.01,
        nonfinite_max_consecutive: int = 10,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, calibration_target, nonfinite,
                         nonfinite_max_fraction, nonfinite_max_consecutive)
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.diffusion = self.make_diffusion(self.model, diffusion_steps, noise_schedule)
        self.eval_seed = int(eval_seed)

    @staticmethod
    def make_diffusion(model: nn.Module, diffusion_steps: int = 1000,
                       noise_schedule: str = "linear") -> GaussianDiffusion:  # fmt: skip
        """The training process for ``model``: a learned-range variance if it predicts one (``learn_sigma``)."""
        return create_diffusion("", noise_schedule=noise_schedule, learn_sigma=getattr(model, "learn_sigma", True),
                                diffusion_steps=diffusion_steps)  # fmt: skip

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        return self.model(x, t, y)

    def setup(self, stage: str) -> None:
        data_classes = getattr(self.trainer.datamodule, "num_classes", None) if self.trainer.datamodule else None
        model_classes = getattr(self.model, "num_classes", None)
        if data_classes is not None and model_classes is not None and data_classes != model_classes:
            raise ValueError(f"num_classes mismatch: the model embeds {model_classes} classes but the data has "
                             f"{data_classes}. Set model_args.num_classes: {data_classes}.")  # fmt: skip

    # ---- the contract ----------------------------------------------------------------------------------

    def model_inputs(self, batch: tuple[Tensor, Tensor]) -> tuple[tuple, dict[str, Any]]:
        """``(x_t, t, y)`` for a batch of clean images: what the network sees in training (alpha calibration)."""
        x, y = batch
        t, noise = _draws(self.diffusion, x, torch.Generator().manual_seed(self.eval_seed))
        return (self.diffusion.q_sample(x, t, noise), t, y), {}

    def _losses(self, batch: tuple[Tensor, Tensor], generator: torch.Generator | None) -> dict[str, Tensor]:
        x, y = batch
        t, noise = _draws(self.diffusion, x, generator)
        return self.diffusion.training_losses(self.model, x, t, model_kwargs={"y": y}, noise=noise)

    def training_loss(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        terms = self._losses(batch, None)
        loss = terms["loss"].mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/mse", terms["mse"].mean(), on_step=False, on_epoch=True)
        if "vb" in terms:
            self.log("train/vb", terms["vb"].mean(), on_step=False, on_epoch=True)
        return loss

    def evaluation_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        """Sum of the per-sample diffusion loss (random timesteps and noise: an estimate, as the paper's average
        over 100 training batches is) and the batch size."""
        terms = self._losses(batch, None)
        return terms["loss"].sum(), len(batch[1])

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable, seed: int = 0) -> dict[str, float]:
        """Mean diffusion loss and epsilon MSE of ``model`` over ``loader`` in eval mode, draws seeded by ``seed``."""
        model.eval()
        diffusion = cls.make_diffusion(model)
        generator = torch.Generator().manual_seed(seed)
        loss = mse = 0.0
        count = 0
        with torch.no_grad():
            for x, y in loader:
                t, noise = _draws(diffusion, x, generator)
                terms = diffusion.training_losses(model, x, t, model_kwargs={"y": y}, noise=noise)
                loss += float(terms["loss"].sum())
                mse += float(terms["mse"].sum())
                count += len(y)
        if count == 0:
            raise ValueError("evaluate: the loader is empty.")
        return {"loss": loss / count, "mse": mse / count}

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, split: str) -> None:
        terms = self._losses(batch, torch.Generator().manual_seed(self.eval_seed + batch_idx))
        n = len(batch[1])
        self.log(f"{split}/loss", terms["loss"].mean(), prog_bar=True, sync_dist=True, batch_size=n)
        self.log(f"{split}/mse", terms["mse"].mean(), sync_dist=True, batch_size=n)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")
