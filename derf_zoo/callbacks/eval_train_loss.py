"""The paper's evaluation-mode training loss (arXiv 2512.10938 §6.1): how well a model fits its training set."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

__all__ = ["EvalModeTrainLoss", "evaluation_mode_loss"]


@torch.no_grad()
def evaluation_mode_loss(task: Any, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    """Mean of the task's own loss (``task.evaluation_loss(batch)``) with the task in eval mode (no dropout or
    drop-path, no training-only terms), over ``loader``; the task's mode is restored afterwards.

    Args:
        task: a :class:`~derf_zoo.tasks.Task` (cross entropy for classification, the diffusion loss, ...).
        loader: batches as the task's dataloaders yield them.
        device: where to run.
    """
    was_training = task.training
    task.eval()
    total, count = 0.0, 0
    try:
        for batch in loader:
            loss_sum, n = task.evaluation_loss(_to_device(batch, device))
            total += float(loss_sum)
            count += int(n)
    finally:
        task.train(was_training)
    if count == 0:
        raise ValueError("evaluation_mode_loss: the loader is empty.")
    return total / count


def _to_device(batch: Any, device: torch.device | str) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class EvalModeTrainLoss(L.Callback):
    """After fitting, measure the training loss in evaluation mode with evaluation preprocessing.

    Runs at ``on_fit_end``, after weight averaging (EMA) has put its weights into the model, on the
    datamodule's ``train_eval_dataloader()`` (the training data without augmentation), with the task's own
    ``evaluation_loss`` (cross entropy without label smoothing or mixup for classification). The paper finds
    Norm < Derf < DyT on this number everywhere: point-wise functions fit less. The value is logged as
    ``train_eval/loss``, printed, and kept in ``pl_module.eval_mode_train_loss``.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule: Any = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_eval_dataloader"):
            raise ValueError("EvalModeTrainLoss needs a datamodule with train_eval_dataloader().")
        if not hasattr(pl_module, "evaluation_loss"):
            raise TypeError(f"EvalModeTrainLoss needs a derf_zoo task (with evaluation_loss), got "
                            f"{type(pl_module).__name__}.")  # fmt: skip
        loss = evaluation_mode_loss(pl_module, datamodule.train_eval_dataloader(), pl_module.device)
        pl_module.eval_mode_train_loss = loss
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"train_eval/loss": loss}, step=trainer.global_step)
                logger.save()
