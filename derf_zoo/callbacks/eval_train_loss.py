"""The paper's evaluation-mode training loss (arXiv 2512.10938 §6.1): how well a model fits its training set."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["EvalModeTrainLoss", "evaluation_mode_loss"]


@torch.no_grad()
def evaluation_mode_loss(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    """Mean cross entropy of ``model`` in eval mode (no dropout or drop-path) over ``loader``, restoring its mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in loader:
            logits = model(x.to(device))
            total += F.cross_entropy(logits, y.to(device), reduction="sum").item()
            count += len(y)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation_mode_loss: the loader is empty.")
    return total / count


class EvalModeTrainLoss(L.Callback):
    """After fitting, measure the training loss in evaluation mode with evaluation preprocessing.

    Runs at ``on_fit_end``, after weight averaging (EMA) has put its weights into the model, on the
    datamodule's ``train_eval_dataloader()`` (the training images without augmentation, mixup or label
    smoothing). The paper finds Norm < Derf < DyT on this number everywhere: point-wise functions fit
    less. The value is logged as ``train_eval/loss``, printed, and kept in ``pl_module.eval_mode_train_loss``.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule: Any = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "train_eval_dataloader"):
            raise ValueError("EvalModeTrainLoss needs a datamodule with train_eval_dataloader().")
        loss = evaluation_mode_loss(pl_module, datamodule.train_eval_dataloader(), pl_module.device)
        pl_module.eval_mode_train_loss = loss
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics({"train_eval/loss": loss}, step=trainer.global_step)
                logger.save()
