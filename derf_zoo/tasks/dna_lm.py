"""DNA language modeling on the task contract: next-token (HyenaDNA) or masked (Caduceus) prediction of bases.

The network is called as ``model(input_ids) -> logits (B, L, V)`` with ``V >= 12`` (the checkpoints pad their
vocabulary to 16; the extra ids never occur as targets). Batches are windows of token ids
(:class:`~derf_zoo.data.genome.GenomeDataModule`); this task turns them into training pairs:

- ``causal``: inputs ``tokens[:, :-1]``, targets ``tokens[:, 1:]`` (``[PAD]`` targets are not scored);
- ``masked``: 15 % of the bases chosen, 80/10/10 ``[MASK]``/random base/kept, only the chosen ones scored
  (:func:`~derf_zoo.data.dna.mask_tokens`). Training draws fresh masks; validation and test draw them from
  ``eval_seed + batch_idx``, so every epoch and every model (Derf or RMSNorm) is scored on the same masks.

The masking lives here rather than in the DataModule so that one DataModule serves both modes and the evaluation
masks can be fixed per batch without touching the loaders' workers or their seeds.

Metrics (validation and test): ``loss`` (mean cross entropy per scored token, nats), ``perplexity``
(``exp(loss)`` of the epoch's token-weighted mean, not a mean of per-batch perplexities) and ``acc`` (per-token
top-1 accuracy of the scored tokens).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo.data.dna import PAD_ID, causal_lm_pair, mask_tokens
from derf_zoo.models._context import check_context  # re-exported: the tasks' name for the models' check
from derf_zoo.tasks.base import TASK_KEY, MetricSpec, NonFinite, Task, module_args
from derf_zoo.tasks.distill import kl_to_teacher
from derf_zoo.tasks.schedules import Schedule

__all__ = ["DNALanguageModeling", "check_context", "lm_pair", "lm_token_stats", "model_lm_mode"]

LMMode = Literal["causal", "masked"]
TASK_TYPES = {"causal": "text-generation", "masked": "fill-mask"}  # Hugging Face pipeline tags


def _tokens(batch: Any) -> Tensor:
    """The token windows of a batch: the batch itself, or the first element of a tuple/list batch."""
    tokens = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.long:
        got = f"{tuple(tokens.shape)} {tokens.dtype}" if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"DNALanguageModeling expects batches of int64 token ids (B, L), got {got}.")
    return tokens


def lm_pair(tokens: Tensor, mode: LMMode, mlm_probability: float = 0.15,
            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(inputs, targets)`` of ``tokens`` for ``mode``; targets are -100 where nothing is scored."""
    if mode == "causal":
        inputs, targets = causal_lm_pair(tokens)
        return inputs, targets.masked_fill(targets == PAD_ID, -100)
    return mask_tokens(tokens, mlm_probability, generator)


def model_lm_mode(model: nn.Module) -> LMMode:
    """The LM mode of a network: its ``is_causal`` attribute when it has one, else its family's task type as the
    registry records it (``pretrained_cfg["task_type"]``: ``fill-mask`` for Caduceus), else causal."""
    is_causal = getattr(model, "is_causal", None)
    if is_causal is not None:
        return "causal" if is_causal else "masked"
    task_type = (getattr(model, "pretrained_cfg", None) or {}).get("task_type")
    return "masked" if task_type == TASK_TYPES["masked"] else "causal"


def lm_token_stats(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(summed cross entropy, number of correct argmax predictions, number of scored tokens)``."""
    scored = targets != -100
    n = int(scored.sum())
    flat = logits.reshape(-1, logits.shape[-1]).float()
    loss_sum = F.cross_entropy(flat, targets.reshape(-1), ignore_index=-100, reduction="sum")
    correct = ((logits.argmax(-1) == targets) & scored).sum()
    return loss_sum, correct, n


class DNALanguageModeling(Task):
    """Pretrain a DNA language model (HyenaDNA causal, Caduceus masked) on genome windows.

    Args:
        model / model_args / optimizer / schedule / calibration_target / nonfinite(_max_*) / teacher / fit_norms /
            distill_weight / distill_temperature / layer_decay: see :class:`Task`.
        mode: ``"causal"`` (next token) or ``"masked"`` (BERT-style, Caduceus).
        mlm_probability: share of bases chosen in masked mode (Caduceus: 0.15).
        eval_seed: validation/test masks of batch ``i`` come from ``eval_seed + i``.
        max_len: the context limit inputs are checked against (default: the model's ``max_seq_len``, if any).
    """

    task_type = "text-generation"  # the instance's follows its mode (fill-mask for masked LM)
    metrics = (
        MetricSpec("loss", higher_is_better=False, description="cross entropy per predicted base (nats)"),
        MetricSpec("perplexity", higher_is_better=False, description="exp of the mean cross entropy per base"),
        MetricSpec("acc", higher_is_better=True, percent=True, description="per-base top-1 accuracy"),
    )

    def __init__(
        self,
        model: str | nn.Module = "hyenadna_tiny_1k",
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        mode: LMMode = "causal",
        mlm_probability: float = 0.15,
        eval_seed: int = 0,
        max_len: int | None = None,
        calibration_target: float = 1.0,
        nonfinite: NonFinite = "error",
        nonfinite_max_fraction: float = 0.01,
        nonfinite_max_consecutive: int = 10,
        teacher: str | nn.Module | None = None,
        fit_norms: int = 0,
        distill_weight: float = 1.0,
        distill_temperature: float = 1.0,
        layer_decay: float | None = None,
    ) -> None:
        if mode not in TASK_TYPES:
            raise ValueError(f"mode must be 'causal' or 'masked', got {mode!r}.")
        if not 0.0 < mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability!r}.")
        super().__init__(model, model_args, optimizer, schedule, calibration_target, nonfinite,
                         nonfinite_max_fraction, nonfinite_max_consecutive, teacher=teacher, fit_norms=fit_norms,
                         distill_weight=distill_weight, distill_temperature=distill_temperature,
                         layer_decay=layer_decay)
        self.save_hyperparameters(ignore=module_args(model=model, teacher=teacher))
        self.mode, self.mlm_probability, self.eval_seed, self.max_len = mode, mlm_probability, int(eval_seed), max_len
        self.task_type = TASK_TYPES[mode]
        # Per split: summed loss, correct predictions and scored tokens of the epoch (reduced over ranks at its end).
        self._sums: dict[str, list[float]] = {"val": [0.0, 0.0, 0.0], "test": [0.0, 0.0, 0.0]}

    def forward(self, input_ids: Tensor) -> Tensor:
        return self.model(input_ids)

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule if self._trainer is not None else None
        data_mode = (getattr(data, "hparams", None) or {}).get("mode") if data is not None else None
        if data_mode is not None and data_mode != self.mode:
            raise ValueError(f"mode mismatch: the task trains {self.mode!r} LM but the DataModule cuts {data_mode!r} "
                             f"windows. Set data.mode: {self.mode}.")  # fmt: skip

    def _pair(self, batch: Any, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        inputs, targets = lm_pair(_tokens(batch), self.mode, self.mlm_probability, generator)
        check_context(self.model, inputs.shape[-1], self.max_len)
        return inputs, targets

    def _stats(self, batch: Any, generator: torch.Generator | None) -> tuple[Tensor, Tensor, int]:
        inputs, targets = self._pair(batch, generator)
        return lm_token_stats(self(inputs), targets)

    # ---- the contract ----------------------------------------------------------------------------------

    def model_inputs(self, batch: Any) -> tuple[tuple, dict[str, Any]]:
        """The network's input ids for ``batch`` (masked with the evaluation seed in masked mode)."""
        return (self._pair(batch, torch.Generator().manual_seed(self.eval_seed))[0],), {}

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        inputs, targets = self._pair(batch, None)
        logits = self(inputs)
        loss_sum, correct, n = lm_token_stats(logits, targets)
        loss = loss_sum / max(n, 1)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=max(n, 1))
        self.log("train/acc", correct.float() / max(n, 1), on_step=False, on_epoch=True, batch_size=max(n, 1))
        if self.distilling():  # KL on every position's token distribution (the teacher sees the same input)
            distill = kl_to_teacher(logits, self.teacher_forward(inputs), self.distill_temperature)
            self.log("train/distill", distill, on_step=True, on_epoch=True)
            loss = loss + self.distill_weight * distill
        return loss

    def evaluation_loss(self, batch: Any) -> tuple[Tensor, int]:
        """Summed cross entropy over the scored tokens and their number (the per-token loss, fixed masks)."""
        loss_sum, _, n = self._stats(batch, torch.Generator().manual_seed(self.eval_seed))
        return loss_sum, n

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable, mode: LMMode | None = None, mlm_probability: float = 0.15,
                 seed: int = 0) -> dict[str, float]:  # fmt: skip
        """Per-token loss, perplexity and accuracy (percent) of ``model`` over ``loader`` in eval mode.

        ``mode`` defaults to the model's (:func:`model_lm_mode`). Masks of batch ``i`` come from ``seed + i``.
        """
        mode = mode or model_lm_mode(model)
        model.eval()
        loss = correct = 0.0
        count = 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                generator = torch.Generator().manual_seed(seed + i)
                inputs, targets = lm_pair(_tokens(batch), mode, mlm_probability, generator)
                s, c, n = lm_token_stats(model(inputs), targets)
                loss, correct, count = loss + float(s), correct + float(c), count + n
        if count == 0:
            raise ValueError("evaluate: the loader holds no scored token.")
        return {"loss": loss / count, "perplexity": math.exp(loss / count), "acc": 100.0 * correct / count}

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: Any, batch_idx: int, split: str) -> None:
        loss_sum, correct, n = self._stats(batch, torch.Generator().manual_seed(self.eval_seed + batch_idx))
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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[TASK_KEY]["task_type"] = self.task_type  # the mode's tag, not the class default
