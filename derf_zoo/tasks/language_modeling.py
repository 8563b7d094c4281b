"""Causal language modeling on the task contract: next-token prediction for text (GPT-2) and DNA (HyenaDNA).

The network is called as ``model(input_ids) -> logits (B, L, V)``. A batch is windows of ``L + 1`` token ids
(:class:`~derf_zoo.data.text.TextDataModule`, :class:`~derf_zoo.data.genome.GenomeDataModule`); the inputs are
``tokens[:, :-1]`` and the targets ``tokens[:, 1:]`` (nanoGPT's ``x``/``y``), targets equal to ``pad_token_id``
not scored. :class:`~derf_zoo.tasks.DNALanguageModeling` is this task with DNA's padding id and a masked mode.

Metrics (validation and test): ``loss`` (mean cross entropy per scored token, in nats: the paper's GPT-2 "val
loss"), ``perplexity`` (``exp(loss)`` of the epoch's token-weighted mean, not a mean of per-batch perplexities)
and ``acc`` (per-token top-1 accuracy). :meth:`LanguageModeling.evaluation_loss` is the same loss in eval mode,
which :class:`~derf_zoo.callbacks.EvalModeTrainLoss` runs over the training split (the paper's §6.1 table:
GPT-2 2.9478 / 2.9702 / 2.9822 for LN / DyT / Derf). Optimizer groups are the contract's: every >= 2-D weight
decays (embeddings included) and nothing else, which is nanoGPT's ``configure_optimizers``; the recipes clip
gradients at 1.0 (``trainer.gradient_clip_val``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo.models._context import check_context
from derf_zoo.tasks.base import MetricSpec, Task, module_args
from derf_zoo.tasks.distill import kl_to_teacher
from derf_zoo.tasks.schedules import Schedule

__all__ = ["LanguageModeling", "causal_pair", "lm_token_stats", "token_batch"]

IGNORE = -100  # the target id cross entropy skips


def token_batch(batch: Any, owner: str = "LanguageModeling") -> Tensor:
    """The token windows of a batch: the batch itself, or the first element of a tuple/list batch."""
    tokens = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"{owner} expects batches of int64 token ids (B, L), got {got}.")
    return tokens


def causal_pair(tokens: Tensor, pad_token_id: int | None = None) -> tuple[Tensor, Tensor]:
    """``(tokens[..., :-1], tokens[..., 1:])``, targets equal to ``pad_token_id`` set to -100 (not scored)."""
    if tokens.shape[-1] < 2:
        raise ValueError(f"Causal LM needs windows of at least 2 tokens (inputs + shifted target), got "
                         f"{tokens.shape[-1]}.")  # fmt: skip
    inputs, targets = tokens[..., :-1], tokens[..., 1:]
    if pad_token_id is not None:
        targets = targets.masked_fill(targets == pad_token_id, IGNORE)
    return inputs, targets


def lm_token_stats(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(summed cross entropy, number of correct argmax predictions, number of scored tokens)``."""
    scored = targets != IGNORE
    n = int(scored.sum())
    flat = logits.reshape(-1, logits.shape[-1]).float()
    loss_sum = F.cross_entropy(flat, targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    correct = ((logits.argmax(-1) == targets) & scored).sum()
    return loss_sum, correct, n


class LanguageModeling(Task):
    """Train a causal language model (GPT-2 on text; HyenaDNA through :class:`DNALanguageModeling`).

    Args:
        model / model_args / optimizer / schedule: see :class:`Task` (a teacher adds the KL of every
            position's next-token distribution).
        pad_token_id: targets with this id are not scored (None: every target is).
        max_len: the context limit inputs are checked against (default: the model's ``max_seq_len``); a longer
            window is an error naming both lengths.
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
    """

    task_type = "text-generation"
    metrics = (
        MetricSpec("loss", higher_is_better=False, description="cross entropy per predicted token (nats)"),
        MetricSpec("perplexity", higher_is_better=False, description="exp of the mean cross entropy per token"),
        MetricSpec("acc", higher_is_better=True, percent=True, description="per-token top-1 accuracy"),
    )

    def __init__(
        self,
        model: str | nn.Module = "gpt2_nano_derf",
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        pad_token_id: int | None = None,
        max_len: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, **kwargs)
        self.save_hyperparameters(ignore=module_args(model=model, teacher=kwargs.get("teacher")))
        self.pad_token_id, self.max_len = pad_token_id, max_len
        # Per split: summed loss, correct predictions and scored tokens of the epoch (reduced over ranks at its end).
        self._sums: dict[str, list[float]] = {"val": [0.0, 0.0, 0.0], "test": [0.0, 0.0, 0.0]}

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids)

    def _pair(self, batch: Any, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)`` of a batch; the DNA task's masked mode overrides it."""
        inputs, targets = causal_pair(token_batch(batch, type(self).__name__), self.pad_token_id)
        check_context(self.model, inputs.shape[-1], self.max_len)
        return inputs, targets

    def _eval_generator(self, batch_idx: int = 0) -> torch.Generator | None:
        """The random source of evaluation batch ``batch_idx`` (causal LM draws nothing)."""
        return None

    def _stats(self, batch: Any, generator: torch.Generator | None) -> tuple[Tensor, Tensor, int]:
        inputs, targets = self._pair(batch, generator)
        return lm_token_stats(self(inputs), targets)

    # ---- the contract ----------------------------------------------------------------------------------

    def model_inputs(self, batch: Any) -> tuple[tuple, dict[str, Any]]:
        """The network's input ids for ``batch``."""
        return (self._pair(batch, self._eval_generator())[0],), {}

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, targets = self._pair(batch, None)
        logits = self(inputs)
        loss_sum, correct, n = lm_token_stats(logits, targets)
        loss = loss_sum / max(n, 1)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=max(n, 1))
        self.log("train/acc", correct.float() / max(n, 1), on_step=False, on_epoch=True, batch_size=max(n, 1))
        if self.distilling():  # KL on every non-pad position's token distribution (the teacher sees the same input)
            positions = None if self.pad_token_id is None else inputs != self.pad_token_id
            distill = kl_to_teacher(logits, self.teacher_forward(inputs), self.distill_temperature, positions)
            self.log("train/distill", distill, on_step=True, on_epoch=True)
            loss = loss + self.distill_weight * distill
        return loss

    def evaluation_loss(self, batch: Any) -> tuple[Tensor, int]:
        """Summed cross entropy over the scored tokens and their number (nats per token once divided)."""
        loss_sum, _, n = self._stats(batch, self._eval_generator())
        return loss_sum, n

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable, pad_token_id: int | None = None) -> dict[str, float]:
        """Per-token loss (nats), perplexity and accuracy (percent) of ``model`` over ``loader`` in eval mode."""
        model.eval()
        loss = correct = 0.0
        count = 0
        with torch.no_grad():
            for batch in loader:
                inputs, targets = causal_pair(token_batch(batch, cls.__name__), pad_token_id)
                s, c, n = lm_token_stats(model(inputs), targets)
                loss, correct, count = loss + float(s), correct + float(c), count + n
        if count == 0:
            raise ValueError("evaluate: the loader holds no scored token.")
        return {"loss": loss / count, "perplexity": math.exp(loss / count), "acc": 100.0 * correct / count}

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: Any, batch_idx: int, split: str) -> None:
        loss_sum, correct, n = self._stats(batch, self._eval_generator(batch_idx))
        sums = self._sums[split]
        sums[0] += float(loss_sum)
        sums[1] += float(correct)
        sums[2] += n

    def _log_epoch(self, split: str) -> None:
        # Token-weighted over the whole epoch and every rank: perplexity is exp of the mean loss per token, not a
        # mean of per-batch perplexities.
        totals = torch.tensor(self._sums[split], dtype=torch.float64, device=self.device)
        self._sums[split] = [0.0, 0.0, 0.0]
        if self._trainer is not None:
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        loss_sum, correct, n = totals.tolist()
        if n == 0:
            return
        self.log(f"{split}/loss", loss_sum / n, prog_bar=True)
        self.log(f"{split}/perplexity", math.exp(loss_sum / n))
        self.log(f"{split}/acc", correct / n)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_start(self) -> None:
        self._sums["val"] = [0.0, 0.0, 0.0]  # a sanity check or an interrupted epoch leaves nothing behind

    def on_test_epoch_start(self) -> None:
        self._sums["test"] = [0.0, 0.0, 0.0]

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
