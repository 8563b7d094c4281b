"""Image classification as a LightningModule: the network is injected, everything else comes from the recipe."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from derf_zoo.norms.calibrate import calibrate_alpha
from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.tasks.optim import param_groups
from derf_zoo.tasks.schedules import Schedule

__all__ = ["ImageClassification"]

_CALIBRATED_KEY = "derf_zoo_alpha_calibrated"
_METRICS_KEY = "derf_zoo_val_metrics"


def build_network(model: str | nn.Module, model_args: dict[str, Any] | None) -> nn.Module:
    """An ``nn.Module`` as given, or a registry name built with ``model_args``."""
    if isinstance(model, nn.Module):
        if model_args:
            raise ValueError("model_args only applies to a registry name; the injected module is already built.")
        return model
    from derf_zoo.models import create_model

    return create_model(model, **(model_args or {}))


class ImageClassification(L.LightningModule):
    """Train and evaluate an image classifier (ViT by default) the way the paper's ImageNet recipe does.

    Args:
        model: a registry name (``"vit_base_derf"``) or an ``nn.Module`` (``class_path``/``init_args`` in YAML).
        model_args: arguments for a registry name (``num_classes``, ``drop_path_rate``, ``norm``, ...).
        optimizer: optimizer factory from the recipe (``torch.optim.AdamW`` + init_args); it receives parameter
            groups in which every 1-D parameter (alpha, shift, norm affine, biases) has no weight decay.
        schedule: per-step learning-rate schedule (warmup + cosine to ``min_lr``); None keeps the lr constant.
        label_smoothing: label smoothing of the cross entropy (folded into the soft targets under mixup).
        mixup: mixup alpha (0: off).
        cutmix: cutmix alpha (0: off).
        mix_prob: probability of mixing a batch; ``switch_prob``: of cutmix instead of mixup when both are on.
        calibration_target: ``alpha * std(input)`` that layers built with ``alpha_init="auto"`` are calibrated
            to on the first training batch (once; identical on every rank).
    """

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
        calibration_target: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.model = build_network(model, model_args)
        self.optimizer_factory = optimizer
        self.schedule = schedule
        num_classes = getattr(self.model, "num_classes", None)
        if not num_classes:
            raise ValueError("ImageClassification needs a model with num_classes > 0 (a classification head).")
        self.num_classes = num_classes
        self.mixup_fn = None
        if mixup > 0 or cutmix > 0:
            from timm.data import Mixup

            self.mixup_fn = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                prob=mix_prob,
                switch_prob=switch_prob,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
        self.label_smoothing = label_smoothing
        self.calibration_target = calibration_target
        self.alpha_calibrated = False
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

    # ---- set-up ----------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        data_classes = getattr(self.trainer.datamodule, "num_classes", None) if self.trainer.datamodule else None
        if data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"num_classes mismatch: the model has {self.num_classes} outputs but the data has "
                f"{data_classes} classes. Set model_args.num_classes: {data_classes}."
            )

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(param_groups(self.model, weight_decay=None))
        if self.schedule is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = self.schedule.build(optimizer, total_steps=total, steps_per_epoch=total / epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.alpha_calibrated:
            return
        auto = [m for m in self.model.modules() if isinstance(m, PointwiseNorm) and m.alpha_auto]
        if auto:
            report = calibrate_alpha(self.model, batch[0], target=self.calibration_target, only_auto=True)
            # Each rank saw its own batch: take rank 0's alphas so every replica starts identical.
            alphas = self.trainer.strategy.broadcast([m.alpha.detach().clone() for m in auto], src=0)
            with torch.no_grad():
                for m, a in zip(auto, alphas):
                    m.alpha.copy_(a.to(m.alpha.device))
            rank_zero_info(str(report))
        self.alpha_calibrated = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[_CALIBRATED_KEY] = self.alpha_calibrated
        # The latest validation metrics, for `derf-zoo export` (they belong to the weights being saved).
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint[_METRICS_KEY] = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run keeps its calibrated alphas (they are in the state dict); never recalibrate.
        self.alpha_calibrated = bool(checkpoint.get(_CALIBRATED_KEY, True))

    # ---- steps -----------------------------------------------------------------------------------------

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        if self.mixup_fn is not None:
            x, soft = self.mixup_fn(x, y)
            loss = torch.sum(-soft * F.log_softmax(self(x), dim=-1), dim=-1).mean()
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
            self.train_acc(logits, y)
            self.log("train/acc1", self.train_acc, on_step=False, on_epoch=True)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str, acc1: MulticlassAccuracy, acc5: MulticlassAccuracy):
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
