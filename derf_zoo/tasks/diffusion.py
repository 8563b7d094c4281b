"""Class-conditional diffusion on the task contract: DiT's training loss (epsilon MSE + VLB for the variance).

The network is called as ``model(x_t, t, y)``; the process is :func:`derf_zoo.diffusion.create_diffusion`'s
(1000-step linear schedule, epsilon prediction, learned-range variance when the model has ``learn_sigma``).
Validation reports the same loss over the held-out images with the noise and timestep of each image drawn from a
seed of its own, ``(eval_seed << 32) + its index in the dataset``, so every epoch (and every norm, batch size and
number of processes) is scored on identical draws; under DDP the ranks' per-image losses are gathered and each
image counted once (the distributed sampler pads with repeats). An estimate of the expected diffusion loss, not a
sample-quality metric such as FID.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo.diffusion import GaussianDiffusion, create_diffusion
from derf_zoo.tasks.base import MetricSpec, Task, module_args
from derf_zoo.tasks.distill import mse_to_teacher
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


class _WithTeacher(nn.Module):
    """The student as the diffusion loss calls it, also recording the MSE to the teacher at the same inputs."""

    def __init__(self, student: nn.Module, teacher_forward: Any) -> None:
        super().__init__()
        self.student = student
        object.__setattr__(self, "teacher_forward", teacher_forward)
        self.distill: Tensor | None = None

    def __getattr__(self, name: str) -> Any:  # learn_sigma, num_classes, ...: the student's
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.student, name)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        # The student drops labels to the null class in training (classifier-free guidance); the teacher, in eval
        # mode, never does. Drop them here once, and give both networks the same labels, so the distillation never
        # pulls the unconditional branch towards a conditional target.
        embedder = getattr(self.student, "y_embedder", None)
        handle = None
        if y is not None and self.student.training and getattr(embedder, "dropout_prob", 0) > 0:
            drop = torch.rand(y.shape, device=y.device) < embedder.dropout_prob
            y = torch.where(drop, torch.full_like(y, embedder.num_classes), y)
            # the labels are already dropped: the student's embedder must not drop again
            handle = embedder.register_forward_pre_hook(lambda module, args: (args[0], False, *args[2:]))
        try:
            out = self.student(x, t, y)
        finally:
            if handle is not None:
                handle.remove()
        self.distill = mse_to_teacher(out, self.teacher_forward(x, t, y), "denoiser outputs")
        return out


def _indexed_draws(diffusion: GaussianDiffusion, x: Tensor, indices: list[int], seed: int) -> tuple[Tensor, Tensor]:
    """Timestep and noise of each image from its own generator, ``(seed << 32) + index``: the draws of an image do
    not depend on the batch it is in, nor on how the dataset is split over processes."""
    ts, noises = [], []
    for index in indices:
        g = torch.Generator().manual_seed((seed << 32) + index)
        ts.append(torch.randint(0, diffusion.num_timesteps, (1,), generator=g))
        noises.append(torch.randn(x.shape[1:], generator=g, dtype=x.dtype))
    return torch.cat(ts).to(x.device), torch.stack(noises).to(x.device)


def _loader_indices(loader: Any) -> list[int] | None:
    """The dataset indices ``loader`` yields, in order (its sampler's; Lightning's DistributedSampler under DDP)."""
    if isinstance(loader, (list, tuple)):
        loader = loader[0] if len(loader) == 1 else None
    batch_sampler = getattr(loader, "batch_sampler", None)
    sampler = getattr(batch_sampler, "sampler", None) or getattr(loader, "sampler", None)
    try:
        return [int(i) for i in sampler]
    except (TypeError, ValueError):
        return None


class Diffusion(Task):
    """Train and evaluate a class-conditional denoiser (DiT) with the Gaussian diffusion loss.

    Args:
        model / model_args / optimizer / schedule: see :class:`Task`.
        diffusion_steps: steps of the training process (DiT: 1000).
        noise_schedule: ``"linear"`` (DiT) or ``"squaredcos_cap_v2"``.
        eval_seed: seed of the validation draws (timesteps and noise; the image at index ``k`` of the dataset uses
            ``(eval_seed << 32) + k``, so the score does not depend on batch size or number of processes).
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, **kwargs)
        self.save_hyperparameters(ignore=module_args(model=model, teacher=kwargs.get("teacher")))
        self.diffusion = self.make_diffusion(self.model, diffusion_steps, noise_schedule)
        self.eval_seed = int(eval_seed)
        self._eval_indices: list[int] | None = None  # this rank's dataset indices, in loader order
        self._eval_seen: list[tuple[Tensor, Tensor, Tensor]] = []  # (indices, loss, mse) per batch

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

    def _losses(self, batch: tuple[Tensor, Tensor], generator: torch.Generator | None,
                model: nn.Module | None = None) -> dict[str, Tensor]:  # fmt: skip
        x, y = batch
        t, noise = _draws(self.diffusion, x, generator)
        return self.diffusion.training_losses(model or self.model, x, t, model_kwargs={"y": y}, noise=noise)

    def training_loss(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        student = _WithTeacher(self.model, self.teacher_forward) if self.distilling() else None
        terms = self._losses(batch, None, student)
        loss = terms["loss"].mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/mse", terms["mse"].mean(), on_step=False, on_epoch=True)
        if "vb" in terms:
            self.log("train/vb", terms["vb"].mean(), on_step=False, on_epoch=True)
        if student is not None:
            # MSE to the teacher's whole output at the same noised inputs: epsilon and, with learn_sigma, the
            # variance interpolation channels.
            self.log("train/distill", student.distill, on_step=True, on_epoch=True)
            loss = loss + self.distill_weight * student.distill
        return loss

    def evaluation_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        """Sum of the per-sample diffusion loss (random timesteps and noise: an estimate, as the paper's average
        over 100 training batches is) and the batch size."""
        terms = self._losses(batch, None)
        return terms["loss"].sum(), len(batch[1])

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable, seed: int = 0) -> dict[str, float]:
        """Mean diffusion loss and epsilon MSE of ``model`` over ``loader`` in eval mode: the ``k``-th image of the
        loader draws from ``(seed << 32) + k``, as validation does for the ``k``-th image of an unshuffled set."""
        model.eval()
        diffusion = cls.make_diffusion(model)
        loss = mse = 0.0
        count = 0
        with torch.no_grad():
            for x, y in loader:
                t, noise = _indexed_draws(diffusion, x, list(range(count, count + len(y))), seed)
                terms = diffusion.training_losses(model, x, t, model_kwargs={"y": y}, noise=noise)
                loss += float(terms["loss"].sum())
                mse += float(terms["mse"].sum())
                count += len(y)
        if count == 0:
            raise ValueError("evaluate: the loader is empty.")
        return {"loss": loss / count, "mse": mse / count}

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _start(self, loaders: Any) -> None:
        self._eval_indices = _loader_indices(loaders)
        self._eval_seen = []

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        done = sum(len(i) for i, _, _ in self._eval_seen)
        if self._eval_indices is not None and done + len(y) <= len(self._eval_indices):
            indices = self._eval_indices[done:done + len(y)]
        else:  # a loader without a sampler (an iterable dataset): its order is the index
            indices = list(range(done, done + len(y)))
        t, noise = _indexed_draws(self.diffusion, x, indices, self.eval_seed)
        terms = self.diffusion.training_losses(self.model, x, t, model_kwargs={"y": y}, noise=noise)
        self._eval_seen.append((torch.tensor(indices), terms["loss"].detach().float(), terms["mse"].detach().float()))

    def _end(self, split: str) -> None:
        if not self._eval_seen:
            return
        indices, loss, mse = (torch.cat(parts).to(self.device) for parts in zip(*self._eval_seen))
        self._eval_seen = []
        if self.trainer.world_size > 1:  # each image once: DistributedSampler pads the last ranks with repeats
            sizes = self.all_gather(torch.tensor(len(indices), device=self.device)).reshape(-1)
            pad = int(sizes.max()) - len(indices)
            padded = [torch.cat([v, v.new_full((pad,), -1)]) for v in (indices, loss, mse)]
            indices, loss, mse = (self.all_gather(v).reshape(-1) for v in padded)
            keep = indices >= 0
            indices, loss, mse = indices[keep], loss[keep], mse[keep]
        order = torch.argsort(indices, stable=True)
        indices, loss, mse = indices[order], loss[order], mse[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        # identical on every rank already: sync_dist only keeps Lightning's distributed logging contract
        self.log(f"{split}/loss", loss[first].mean(), prog_bar=True, sync_dist=True)
        self.log(f"{split}/mse", mse[first].mean(), sync_dist=True)

    def on_validation_epoch_start(self) -> None:
        self._start(self.trainer.val_dataloaders)

    def on_test_epoch_start(self) -> None:
        self._start(self.trainer.test_dataloaders)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_end(self) -> None:
        self._end("test")
