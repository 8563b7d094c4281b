"""Self-supervised speech pretraining (wav2vec 2.0) on the task contract.

Batches are mappings ``{"input_values": (B, samples) float, "attention_mask": (B, samples) bool/long}`` (the
mask is optional: 1/True at real samples, right padding), what the speech DataModule yields; a bare waveform
tensor works too.

The loss is fairseq's ``wav2vec`` criterion (see :mod:`derf_zoo.models.wav2vec2`): the model returns sums over
the masked frames and the task divides by their number (fairseq normalises gradients by ``sample_size``). Every
logged loss is per masked frame in bits (``/ ln 2``), as fairseq logs it, so ``val/loss`` is the number the
Derf and DyT papers report (wav2vec 2.0 Base: LN 1.95, Derf 1.93). The Gumbel temperature follows the global
step (``max(2 * 0.999995**step, 0.5)`` for Base) and lives in the model's state, so a checkpoint keeps it.
Validation draws its masks and negatives from ``eval_seed + batch_idx`` (``evaluation_loss`` from ``eval_seed``),
with their own generators, so it is deterministic across epochs, runs and norms and leaves the global RNG alone.
Gradient clipping is the Trainer's (``trainer.gradient_clip_val``, fairseq's ``clip_norm``;
fairseq's wav2vec 2.0 pretraining configs leave it at 0 = off).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo.tasks.base import MetricSpec, Task, module_args
from derf_zoo.tasks.distill import mse_to_teacher
from derf_zoo.tasks.schedules import Schedule

__all__ = ["SpeechPretraining", "fairseq_adam"]

LN2 = math.log(2.0)


def fairseq_adam(params: Iterable) -> torch.optim.Optimizer:
    """fairseq's wav2vec 2.0 Base optimizer: Adam with decoupled weight decay (fairseq's ``adam`` is AdamW),
    lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.01."""
    return torch.optim.AdamW(params, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)


# A checkpoint's hyperparameters name it; Lightning resumes with weights_only=True.
torch.serialization.add_safe_globals([fairseq_adam])


def _unpack(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Mapping):
        if "input_values" not in batch:
            raise ValueError(f"A speech batch needs 'input_values' (and optionally 'attention_mask'); got keys "
                             f"{sorted(batch)}.")  # fmt: skip
        return batch["input_values"], batch.get("attention_mask")
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0], batch[1] if len(batch) > 1 else None
    raise TypeError(f"A speech batch is a dict with 'input_values' (and 'attention_mask'), got {type(batch).__name__}.")


def _with_loss(out: Any) -> Any:
    """``out`` if it holds a pretraining loss; a clear error otherwise (a model that masked nothing returns none)."""
    if getattr(out, "loss", None) is None:
        mask = getattr(out, "mask_time_indices", None)
        masked = "no mask" if mask is None else f"{int(mask.sum())} masked frame(s)"
        raise ValueError(f"The wav2vec 2.0 model returned no loss for this batch ({masked}): pretraining needs "
                         "masked frames in every row (check mask_prob, min_masks, short utterances).")  # fmt: skip
    return out


class SpeechPretraining(Task):
    """Pretrain a wav2vec 2.0 model (contrastive + diversity + feature penalty) and report its validation loss.

    Args:
        model / model_args / optimizer / schedule: see :class:`Task` (default optimizer:
            :func:`fairseq_adam`; the recipe's polynomial schedule is ``Schedule("polynomial", warmup_steps=32000)``).
        eval_seed: seed of the validation masks and negatives (batch ``i`` uses ``eval_seed + i``).
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
    """

    task_type = "feature-extraction"
    metrics = (
        MetricSpec("loss", higher_is_better=False,
                   description="pretraining loss on held-out audio, bits per masked frame (fairseq's valid loss), "
                               "fixed masks and negatives"),
        MetricSpec("contrastive", higher_is_better=False,
                   description="contrastive part of the same loss, bits per masked frame"),
    )  # fmt: skip

    def __init__(
        self,
        model: str | nn.Module = "wav2vec2_tiny_derf",
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = fairseq_adam,
        schedule: Schedule | None = None,
        eval_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, **kwargs)
        self.save_hyperparameters(ignore=module_args(model=model, teacher=kwargs.get("teacher")))
        if not getattr(self.model, "pretraining", False):
            raise ValueError("SpeechPretraining needs a wav2vec 2.0 model with its pretraining head "
                             "(pretraining=True).")  # fmt: skip
        self.eval_seed = int(eval_seed)

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None, **kwargs: Any) -> Any:
        return self.model(input_values, attention_mask=attention_mask, **kwargs)

    # ---- the contract ----------------------------------------------------------------------------------

    def model_inputs(self, batch: Any) -> tuple[tuple, dict[str, Any]]:
        """The waveforms and padding mask, with masks/negatives from ``eval_seed`` (alpha calibration)."""
        x, attention_mask = _unpack(batch)
        return (x,), {"attention_mask": attention_mask, "generator": self.eval_generator()}

    def calibration_call(self, batches: list[Any]) -> tuple[tuple, dict[str, Any]]:
        """The batches' utterances cropped to the shortest real length among them, so the norm fit sees only real
        frames in one forward pass (padding would add repeated silent frames to every layer's fit, and change the
        feature encoder's group norm statistics)."""
        waves, lengths = [], []
        for batch in batches:
            x, mask = _unpack(batch)
            waves.append(x)
            lengths += (mask.sum(-1) if mask is not None else torch.full((len(x),), x.shape[-1])).tolist()
        shortest = int(min(lengths))
        x = torch.cat([w[..., :shortest] for w in waves])
        return (x,), {"attention_mask": None, "generator": self.eval_generator()}

    def eval_generator(self, batch_idx: int = 0) -> torch.Generator:
        """The generator of the masks and negatives of evaluation batch ``batch_idx``.

        Args:
            batch_idx: index of the batch in its loader; validation's batch ``i`` uses ``eval_seed + i``.

        Returns:
            A CPU generator seeded with ``eval_seed + batch_idx`` (the global RNG stays untouched).
        """
        return torch.Generator().manual_seed(self.eval_seed + batch_idx)

    @staticmethod
    def parts(out: Any) -> dict[str, Tensor]:
        """Per-masked-frame values (bits) of a model output, plus perplexity and the masked fraction."""
        out = _with_loss(out)
        n = out.sample_size.clamp_min(1).float()
        mask = out.mask_time_indices
        frames = mask.numel() if out.padding_mask is None else (~out.padding_mask).sum()
        return {
            "loss": out.loss / n / LN2,
            "contrastive": out.contrastive_loss / n / LN2,
            "diversity": out.diversity_loss / n / LN2,
            "feature_penalty": out.feature_penalty / n / LN2,
            "perplexity": out.codevector_perplexity.detach(),
            "code_perplexity": out.code_perplexity.detach(),
            "masked_fraction": mask.sum() / frames,
        }

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        self.model.set_num_updates(self.global_step)  # the Gumbel temperature of this update
        x, attention_mask = _unpack(batch)
        out = _with_loss(self.model(x, attention_mask=attention_mask))
        parts = self.parts(out)
        n = int(out.sample_size)
        distill = None
        if self.distilling():  # MSE to the teacher's last hidden states under the same masks and negatives
            target = self.teacher_forward(x, attention_mask=attention_mask, mask_time_indices=out.mask_time_indices,
                                          sampled_negative_indices=out.sampled_negative_indices)  # fmt: skip
            frames = None if out.padding_mask is None else ~out.padding_mask
            distill = mse_to_teacher(out.last_hidden_state, target.last_hidden_state, "hidden states", frames)
            self.log("train/distill", distill, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", parts["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        for name in ("contrastive", "diversity", "feature_penalty", "perplexity", "code_perplexity",
                     "masked_fraction"):  # fmt: skip
            self.log(f"train/{name}", parts[name], on_step=True, on_epoch=True, batch_size=n)
        self.log("train/temperature", self.model.quantizer.temperature, on_step=True, on_epoch=False)
        # fairseq divides the summed loss by sample_size for the gradient; in nats, as fairseq optimises it.
        loss = out.loss / out.sample_size.clamp_min(1)
        return loss if distill is None else loss + self.distill_weight * distill

    def evaluation_loss(self, batch: Any) -> tuple[Tensor, int]:
        """Summed loss in bits over the masked frames and their number, with the masks and negatives of
        ``eval_seed`` (as validation's first batch): the same batch always gets the same value."""
        x, attention_mask = _unpack(batch)
        out = _with_loss(self.model(x, attention_mask=attention_mask, generator=self.eval_generator()))
        return out.loss / LN2, int(out.sample_size)

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable, seed: int = 0) -> dict[str, float]:
        """Loss and contrastive loss (bits per masked frame) of ``model`` over ``loader`` in eval mode, with the
        masks and negatives of batch ``i`` drawn from ``seed + i`` (what validation logs)."""
        model.eval()
        loss = contrastive = 0.0
        frames = 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                x, attention_mask = _unpack(batch)
                out = _with_loss(model(x, attention_mask=attention_mask,
                                       generator=torch.Generator().manual_seed(seed + i)))  # fmt: skip
                loss += float(out.loss)
                contrastive += float(out.contrastive_loss)
                frames += int(out.sample_size)
        if frames == 0:
            raise ValueError("evaluate: the loader is empty.")
        return {"loss": loss / frames / LN2, "contrastive": contrastive / frames / LN2}

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: Any, batch_idx: int, split: str) -> None:
        x, attention_mask = _unpack(batch)
        out = self.model(x, attention_mask=attention_mask, generator=self.eval_generator(batch_idx))
        parts = self.parts(out)
        n = int(out.sample_size)  # weighting by masked frames makes the epoch value sum(loss) / sum(frames)
        self.log(f"{split}/loss", parts["loss"], prog_bar=True, sync_dist=True, batch_size=n)
        for name in ("contrastive", "diversity", "perplexity", "code_perplexity"):
            self.log(f"{split}/{name}", parts[name], sync_dist=True, batch_size=n)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")
