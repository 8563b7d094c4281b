"""DNA language modeling on the task contract: next-token (HyenaDNA) or masked (Caduceus) prediction of bases.

The causal mode is :class:`~derf_zoo.tasks.LanguageModeling` (the one causal LM task, shared with GPT-2 on text)
with DNA's ``[PAD]`` id; this module adds the masked mode and the DNA defaults.

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
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from derf_zoo._validate import check_choice
from derf_zoo.data.dna import PAD_ID, mask_tokens
from derf_zoo.models._context import check_context  # re-exported: the tasks' name for the models' check
from derf_zoo.tasks.base import TASK_KEY, module_args
from derf_zoo.tasks.language_modeling import LanguageModeling, causal_pair, lm_token_stats, token_batch
from derf_zoo.tasks.schedules import Schedule

__all__ = ["DNALanguageModeling", "check_context", "lm_pair", "lm_token_stats", "model_lm_mode"]

LMMode = Literal["causal", "masked"]
TASK_TYPES = {"causal": "text-generation", "masked": "fill-mask"}  # Hugging Face pipeline tags


def _tokens(batch: Any) -> Tensor:
    """The token windows of a batch: the batch itself, or the first element of a tuple/list batch."""
    return token_batch(batch, "DNALanguageModeling")


def lm_pair(tokens: Tensor, mode: LMMode, mlm_probability: float = 0.15,
            generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(inputs, targets)`` of ``tokens`` for ``mode``; targets are -100 where nothing is scored."""
    if mode == "causal":
        return causal_pair(tokens, PAD_ID)
    return mask_tokens(tokens, mlm_probability, generator)


def model_lm_mode(model: nn.Module) -> LMMode:
    """The LM mode of a network: its ``is_causal`` attribute when it has one, else its family's task type as the
    registry records it (``pretrained_cfg["task_type"]``: ``fill-mask`` for Caduceus), else causal."""
    is_causal = getattr(model, "is_causal", None)
    if is_causal is not None:
        return "causal" if is_causal else "masked"
    task_type = (getattr(model, "pretrained_cfg", None) or {}).get("task_type")
    return "masked" if task_type == TASK_TYPES["masked"] else "causal"


class DNALanguageModeling(LanguageModeling):
    """Pretrain a DNA language model (HyenaDNA causal, Caduceus masked) on genome windows.

    Args:
        model / model_args / optimizer / schedule: see :class:`Task`.
        mode: ``"causal"`` (next token; :class:`LanguageModeling` with ``[PAD]`` unscored) or ``"masked"``
            (BERT-style, Caduceus).
        mlm_probability: share of bases chosen in masked mode (Caduceus: 0.15).
        eval_seed: validation/test masks of batch ``i`` come from ``eval_seed + i``.
        max_len: the context limit inputs are checked against (default: the model's ``max_seq_len``, if any).
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
    """

    task_type = "text-generation"  # the instance's follows its mode (fill-mask for masked LM)
    metrics = tuple(type(m)(m.name, m.higher_is_better, m.percent, m.description.replace("token", "base"))
                    for m in LanguageModeling.metrics)  # fmt: skip

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
        **kwargs: Any,
    ) -> None:
        check_choice("mode", mode, TASK_TYPES)
        if not 0.0 < mlm_probability <= 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1], got {mlm_probability!r}.")
        super().__init__(model, model_args, optimizer, schedule, PAD_ID, max_len, **kwargs)
        # pad_token_id is LanguageModeling's argument, which this class fixes to PAD_ID and does not take: dropped from
        # what LanguageModeling recorded, or a reload (DNALanguageModeling(**hparams)) would pass it twice.
        self.save_hyperparameters(ignore=["pad_token_id", *module_args(model=model, teacher=kwargs.get("teacher"))])
        self.mode, self.mlm_probability, self.eval_seed = mode, mlm_probability, int(eval_seed)
        self.task_type = TASK_TYPES[mode]

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

    def _eval_generator(self, batch_idx: int = 0) -> torch.Generator:
        """Masks of evaluation batch ``i`` come from ``eval_seed + i`` (every epoch and model sees the same)."""
        return torch.Generator().manual_seed(self.eval_seed + batch_idx)

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[TASK_KEY]["task_type"] = self.task_type  # the mode's tag, not the class default
