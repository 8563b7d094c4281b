"""Image classification on the task contract: cross entropy, mixup/cutmix, top-1/top-5."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from derf_zoo.tasks.base import MetricSpec, Task, module_args
from derf_zoo.tasks.distill import kl_to_teacher
from derf_zoo.tasks.schedules import Schedule

__all__ = ["ImageClassification", "top1_and_loss"]


def top1_and_loss(model: nn.Module, loader: Iterable) -> dict[str, float]:
    """Top-1 accuracy (in percent) and mean cross entropy of a classifier over ``(inputs, labels)`` batches, in
    eval mode: what ``evaluate`` reports for every classification task."""
    model.eval()
    correct, total, loss = 0, 0, 0.0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            correct += int((logits.argmax(-1) == y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            total += len(y)
    if total == 0:
        raise ValueError("evaluate: the loader is empty.")
    return {"acc1": 100.0 * correct / total, "loss": loss / total}


class ImageClassification(Task):
    """Train and evaluate an image classifier (ViT by default) the way the paper's ImageNet recipe does.

    Args:
        model / model_args / optimizer / schedule: see :class:`Task`.
        label_smoothing: label smoothing of the cross entropy (folded into the soft targets under mixup).
        mixup: mixup alpha (0: off).
        cutmix: cutmix alpha (0: off).
        mix_prob: probability of mixing a batch; ``switch_prob``: of cutmix instead of mixup when both are on.
        reset_head: re-initialise the classifier after the model is built (``model.reset_classifier``, timm's API):
            fine-tuning pretrained weights onto another label set with as many classes as the weights' (another
            ``num_classes`` re-initialises it by itself, with a warning).
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
    """

    task_type = "image-classification"
    metrics = (
        MetricSpec("acc1", higher_is_better=True, percent=True, description="top-1 accuracy"),
        MetricSpec("acc5", higher_is_better=True, percent=True, description="top-5 accuracy"),
        MetricSpec("loss", higher_is_better=False, description="cross entropy"),
    )

    def __init__(
        self,
        model: str | nn.Module = "vit_nano_derf",
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
        reset_head: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, **kwargs)
        self.save_hyperparameters(ignore=module_args(model=model, teacher=kwargs.get("teacher")))
        num_classes = getattr(self.model, "num_classes", None)
        if not num_classes:
            raise ValueError("ImageClassification needs a model with num_classes > 0 (a classification head).")
        if reset_head:
            if not callable(getattr(self.model, "reset_classifier", None)):
                raise ValueError(f"reset_head: {type(self.model).__name__} has no reset_classifier(num_classes) to "
                                 "re-initialise its head with.")  # fmt: skip
            self.model.reset_classifier(num_classes)
        self.num_classes = num_classes
        self.mixup_fn = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup

            self.mixup_fn = Mixup(
                mixup_alpha=mixup, cutmix_alpha=cutmix, prob=mix_prob, switch_prob=switch_prob,
                label_smoothing=label_smoothing, num_classes=num_classes,
            )  # fmt: skip
        self.label_smoothing = label_smoothing
        top_k = min(5, num_classes)
        # "micro": the fraction of images classified right, i.e. the usual top-1 (torchmetrics defaults to a
        # per-class average, which differs from top-1 on unbalanced splits).
        self.train_acc = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top_k, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        data_classes = getattr(self.trainer.datamodule, "num_classes", None) if self.trainer.datamodule else None
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"num_classes mismatch: the model has {self.num_classes} outputs but the data has "
                f"{data_classes} classes. Set model_args.num_classes: {data_classes}."
            )

    # ---- the contract ----------------------------------------------------------------------------------

    def training_loss(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.mixup_fn is not None:
            x, soft = self.mixup_fn(x, y)
            logits = self(x)
            loss = torch.sum(-soft * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            self.train_acc(logits, y)
            self.log("train/acc1", self.train_acc, on_step=False, on_epoch=True)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        if self.distilling():  # the teacher sees the same (mixed) images
            distill = kl_to_teacher(logits, self.teacher_forward(x), self.distill_temperature)
            self.log("train/distill", distill, on_step=True, on_epoch=True)
            loss = loss + self.distill_weight * distill
        return loss

    def evaluation_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="sum"), len(y)

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable) -> dict[str, float]:
        """Top-1 accuracy (in percent) and mean cross entropy of ``model`` over ``loader``, in eval mode."""
        return top1_and_loss(model, loader)

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str, acc1: MulticlassAccuracy,
                  acc5: MulticlassAccuracy) -> None:  # fmt: skip
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), sync_dist=True)
        acc1(logits, y)
        acc5(logits, y)
        self.log(f"{split}/acc1", acc1, prog_bar=True)
        self.log(f"{split}/acc5", acc5)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc1, self.val_acc5)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc1, self.test_acc5)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)
