"""The task contract: one LightningModule base that owns what training any family needs.

A task subclass adds only its loss, its metrics and its batch handling. The base owns:

- building the network: a registry name + ``model_args``, or an injected ``nn.Module``;
- parameter groups (no weight decay on 1-D parameters: alpha, shift, norm affine, biases; per layer with
  ``layer_decay``) and the per-step learning-rate schedule;
- ``alpha_init="auto"`` calibration on the first training batch, identical on every DDP rank, through
  :meth:`Task.model_inputs` (how a batch becomes the network's inputs);
- a non-finite loss or gradient stops the run with an error naming the step and the batch (or, with
  ``nonfinite="skip"``, skips the batch on every rank and counts it, up to a bound), before it can reach a
  checkpoint;
- a teacher (``teacher:``): frozen, outside the module tree (never saved with the student); with
  ``fit_norms: N`` the student starts from the teacher's weights and its point-wise norms are fitted to the
  teacher's norms on N training batches before the first step; subclasses add ``distill_weight`` times their
  distillation loss (:mod:`derf_zoo.tasks.distill`);
- the checkpoint keys it records: whether calibration ran, the validation metrics of the saved weights
  and the task's declaration (:data:`TASK_KEY`), which ``derf-zoo export`` and the model card read; and a
  checksum of the saved weights and optimizer state, verified on load (:mod:`derf_zoo.tasks.checkpoint`, which
  also reads checkpoints back);
- what it is: :attr:`Task.task_type` and :attr:`Task.metrics`, declared once on the class.
"""

from __future__ import annotations

import copy
import inspect
import types
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from derf_zoo._validate import check_choice, check_int, check_positive, is_real
from derf_zoo.norms.calibrate import calibrate_alpha
from derf_zoo.norms.fit import fit_pointwise_norms, merge_calls
from derf_zoo.norms.layers import PointwiseNorm
from derf_zoo.tasks.checkpoint import (
    CALIBRATED_KEY,
    METRICS_KEY,
    NORMS_FITTED_KEY,
    TASK_KEY,
    optimizer_classes,
    record_checksum,
    verify_checksum,
)
from derf_zoo.tasks.distill import check_distill_args, describe_teacher, init_student, load_teacher, teacher_references
from derf_zoo.tasks.layer_decay import check_layer_decay
from derf_zoo.tasks.optim import param_groups
from derf_zoo.tasks.schedules import Schedule

__all__ = ["CALIBRATED_KEY", "METRICS_KEY", "NORMS_FITTED_KEY", "TASK_KEY", "TASK_OPTIONS", "MetricSpec", "Task",
           "build_network", "module_args"]

# A task built in Python records its optimizer argument (by default the torch.optim.AdamW class) and its schedule in
# its hyperparameters; Lightning resumes with weights_only=True, which must be allowed to name these classes.
torch.serialization.add_safe_globals([*optimizer_classes(), Schedule])

NonFinite = Literal["error", "skip"]
#: The keyword options of :class:`Task` that every task shares; subclasses take them as ``**kwargs`` and forward them.
TASK_OPTIONS = ("calibration_target", "nonfinite", "nonfinite_max_fraction", "nonfinite_max_consecutive", "teacher",
                "fit_norms", "distill_weight", "distill_temperature", "layer_decay")


@dataclass(frozen=True)
class MetricSpec:
    """A metric a task logs as ``val/<name>`` and ``test/<name>`` and a model card reports.

    Attributes:
        name: the logged name (``"acc1"``, ``"fid"``, ``"loss"``).
        higher_is_better: direction (what a checkpoint monitor and a verdict compare).
        percent: logged as a fraction, reported x100 (accuracies).
        description: one line for the card (``"top-1 accuracy"``).
    """

    name: str
    higher_is_better: bool
    percent: bool = False
    description: str = ""

    def report(self, value: float) -> float:
        """The logged value as a card shows it (x100 for a percentage)."""
        return 100.0 * value if self.percent else value


def module_args(**values: Any) -> list[str]:
    """The names of the arguments given as built modules: not hyperparameters (a checkpoint records plain data)."""
    return [name for name, value in values.items() if isinstance(value, nn.Module)]


def build_network(model: str | nn.Module, model_args: dict[str, Any] | None) -> nn.Module:
    """An ``nn.Module`` as given, or a registry name built with ``model_args``."""
    if isinstance(model, nn.Module):
        if model_args:
            raise ValueError("model_args only applies to a registry name; the injected module is already built.")
        return model
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a registry name or an nn.Module, got {model!r}.")
    from derf_zoo.models import create_model

    return create_model(model, **(model_args or {}))


class Task(L.LightningModule):
    """Base of every derf_zoo task. Subclasses set :attr:`task_type` and :attr:`metrics` and implement
    :meth:`training_loss`, :meth:`evaluation_loss`, ``validation_step`` / ``test_step`` and :meth:`evaluate`.

    The options after ``schedule`` (:data:`TASK_OPTIONS`) are keyword-only and shared by every task: a subclass
    takes them as ``**kwargs`` and passes them on with ``super().__init__(model, model_args, optimizer, schedule,
    **kwargs)``. jsonargparse follows that call, so recipes, ``--help`` and the unknown-key check see them as the
    subclass's own; :meth:`save_hyperparameters` records them all.

    Args:
        model: a registry name (``"vit_base_derf"``) or an ``nn.Module`` (``class_path``/``init_args`` in YAML).
        model_args: arguments for a registry name (``num_classes``, ``drop_path_rate``, ``norm``, ...).
        optimizer: optimizer factory from the recipe (``torch.optim.AdamW`` + init_args); it receives parameter
            groups in which every 1-D parameter (alpha, shift, norm affine, biases) has no weight decay.
        schedule: per-step learning-rate schedule (warmup + cosine to ``min_lr``); None keeps the lr constant.
        calibration_target: ``alpha * std(input)`` that layers built with ``alpha_init="auto"`` are calibrated
            to on the first training batch (once; identical on every rank).
        nonfinite: what a non-finite training loss does: ``"error"`` (default) stops the run with an error that
            names the step and the batch, so no checkpoint ever holds the damage; ``"skip"`` skips the batch
            (no optimizer step) and counts it in ``train/nonfinite_skipped``. A non-finite gradient is always
            an error (outside fp16 mixed precision, whose loss scaler skips such steps itself).
        nonfinite_max_fraction: with ``nonfinite="skip"``, the run stops with an error once more than this
            fraction of the training batches seen so far were skipped (and more than
            ``nonfinite_max_consecutive`` in all: a few early skips are not yet a fraction).
        nonfinite_max_consecutive: with ``nonfinite="skip"``, the run stops with an error once more than this many
            batches in a row were skipped (a diverged run skips every batch).
        teacher: a network to distil from (see :func:`derf_zoo.tasks.distill.load_teacher`: a released name such
            as ``"vit_mini_ln.fmnist"``, ``"timm:<name>"``, a Hub folder or id, a ``.ckpt``); frozen, in eval mode,
            never saved into this task's checkpoint. None (default): no distillation, the task as without it.
        fit_norms: with a teacher, the number of training batches on which the student (same architecture as the
            teacher up to the norm) is started from the teacher's weights and its point-wise norms are fitted to
            the teacher's, before the first step (:func:`derf_zoo.norms.fit_pointwise_norms`); 0: no fit.
        distill_weight: weight of the distillation loss added to the task's loss (0: the teacher only starts the
            student, with ``fit_norms``).
        distill_temperature: softmax temperature of a KL distillation loss (logits); MSE losses ignore it.
        layer_decay: timm's layer-wise learning-rate decay for fine-tuning (BEiT/MAE: 0.65-0.75): block ``i`` of
            ``L`` trains at ``layer_decay ** (L - i)`` of the lr, the embeddings at ``layer_decay ** (L + 1)``, the
            final norm and head at the full lr (:mod:`derf_zoo.tasks.layer_decay`). None (default): one lr.
    """

    #: Hugging Face pipeline tag of what the task trains (the model card's ``pipeline_tag``).
    task_type: ClassVar[str] = ""
    #: the metrics the task logs on validation and test; the first is the headline.
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    def __init__(
        self,
        model: str | nn.Module,
        model_args: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        *,
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
        super().__init__()
        # The options as this class received them: subclasses forward them through **kwargs, so a subclass that
        # records its own arguments records only those its caller passed; save_hyperparameters adds the rest.
        self._task_options = dict(
            calibration_target=calibration_target, nonfinite=nonfinite, nonfinite_max_fraction=nonfinite_max_fraction,
            nonfinite_max_consecutive=nonfinite_max_consecutive, teacher=teacher, fit_norms=fit_norms,
            distill_weight=distill_weight, distill_temperature=distill_temperature, layer_decay=layer_decay,
        )  # fmt: skip
        check_distill_args(teacher, fit_norms, distill_weight, distill_temperature)
        check_layer_decay(layer_decay)
        check_choice("nonfinite", nonfinite, ("error", "skip"))
        if not (is_real(nonfinite_max_fraction) and 0 <= nonfinite_max_fraction < 1):
            raise ValueError(f"nonfinite_max_fraction must be a number in [0, 1), got {nonfinite_max_fraction!r}.")
        check_int("nonfinite_max_consecutive", nonfinite_max_consecutive, 0)
        check_positive("calibration_target", calibration_target)
        self.model = build_network(model, model_args)
        if isinstance(model, str):
            # pretrained=True returns the network in eval mode (for inference, as timm does) and Lightning keeps a
            # submodule's mode at fit start: without this, a fine-tune would run with drop path and dropout off.
            self.model.train()
        self.optimizer_factory = optimizer
        self.schedule = schedule
        self.calibration_target = float(calibration_target)
        self.nonfinite = nonfinite
        self.nonfinite_skipped = 0
        self.nonfinite_max_fraction = float(nonfinite_max_fraction)
        self.nonfinite_max_consecutive = nonfinite_max_consecutive
        self._nonfinite_run = 0  # batches skipped in a row
        self._batches_seen = 0  # training batches of this process (the fraction's denominator)
        self._pending_losses: list[tuple[Tensor, int]] = []  # this optimizer step's losses, checked before it
        self.alpha_calibrated = False
        # A teacher given as a module must not become a submodule (nn.Module.__setattr__ would register it).
        object.__setattr__(self, "teacher_spec", teacher)
        self.fit_norms = fit_norms
        self.distill_weight = float(distill_weight)
        self.distill_temperature = float(distill_temperature)
        self.layer_decay = layer_decay
        self.norms_fitted = False
        # Loaded at fit start, and kept out of the module tree: never in the student's state dict, checkpoint
        # or export, never moved or put in train mode by Lightning.
        object.__setattr__(self, "_teacher", None)

    # ---- what a subclass provides ----------------------------------------------------------------------

    def save_hyperparameters(self, *args: Any, ignore: Sequence[str] | str | None = None,
                             frame: types.FrameType | None = None, logger: bool = True) -> None:
        """Lightning's, then every option of :data:`TASK_OPTIONS` the caller's arguments left out, at its value.

        A subclass takes the shared options as ``**kwargs``: its own arguments hold only those its caller passed
        (a recipe passes them all; ``ImageClassification("vit_nano_derf")`` none). The checkpoint records every
        option all the same, so it reloads with the values it was trained with, not with later defaults.
        """
        frame = frame or inspect.currentframe().f_back  # the subclass's __init__, whose arguments get saved
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        if args:  # an explicit selection: exactly what was asked for
            return
        ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
        options = getattr(self, "_task_options", {})
        missing = {name: value for name, value in options.items()
                   if name not in self.hparams and name not in ignored and not isinstance(value, nn.Module)}
        if missing:
            self.hparams.update(missing)
            self._hparams_initial.update(copy.deepcopy(missing))  # what loggers record, as Lightning keeps it

    def model_inputs(self, batch: Any) -> tuple[tuple, dict[str, Any]]:
        """``(args, kwargs)`` the network is called with for ``batch`` (used by alpha calibration).

        The default takes the first element of a tuple/list batch (``(images, labels)``) or the batch itself.
        """
        return ((batch[0] if isinstance(batch, (tuple, list)) else batch),), {}

    def calibration_call(self, batches: list[Any]) -> tuple[tuple, dict[str, Any]]:
        """One network call ``(args, kwargs)`` holding all ``batches`` (the norm fit sees them in one forward pass).

        The default concatenates :meth:`model_inputs` of each batch along dimension 0; a task whose batches differ
        in length (speech) pads them here.
        """
        return merge_calls([self.model_inputs(b) for b in batches])

    def training_loss(self, batch: Any, batch_idx: int) -> Tensor:
        """The scalar loss of one training batch (log what you like here)."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss(batch, batch_idx).")

    def evaluation_loss(self, batch: Any) -> tuple[Tensor, int]:
        """``(sum of the per-sample loss, number of samples)`` of ``batch`` in evaluation mode, without
        training-only terms (label smoothing, mixup): the paper's evaluation-mode training loss (§6.1)."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluation_loss(batch).")

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable) -> dict[str, float]:
        """The declared metrics of ``model`` over ``loader``, as a card reports them (``derf-zoo export --eval``)."""
        raise NotImplementedError(f"{cls.__name__} does not define evaluate(model, loader).")

    # ---- the declaration ------------------------------------------------------------------------------

    @classmethod
    def declaration(cls) -> dict[str, Any]:
        """What the checkpoint records about the task: class, task type and metrics (plain data)."""
        if not cls.task_type or not cls.metrics:
            raise TypeError(f"{cls.__name__} must declare task_type and metrics.")
        return {
            "class_path": f"{cls.__module__}.{cls.__qualname__}",
            "task_type": cls.task_type,
            "metrics": [asdict(m) for m in cls.metrics],
        }

    # ---- optimisation ---------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(param_groups(self.model, weight_decay=None, layer_decay=self.layer_decay))
        if self.schedule is None:
            for group in optimizer.param_groups:  # a constant lr: the layer scale applies once (a schedule's does)
                group["lr"] *= group.get("lr_scale", 1.0)
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = self.schedule.build(optimizer, total_steps=total, steps_per_epoch=total / epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        loss = self.training_loss(batch, batch_idx)
        if self.nonfinite == "error":
            # Checked in on_before_optimizer_step together with the gradients: one host sync per step, and the
            # step still never happens (a non-finite loss gives non-finite gradients, caught there first).
            self._pending_losses.append((loss.detach(), batch_idx))
            return loss
        self._batches_seen += 1
        finite = bool(torch.isfinite(loss.detach()).all())  # skip mode must know before the backward: a sync
        if self.trainer.world_size > 1:  # one rank skipping alone would leave the others waiting in DDP's all-reduce
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            self._nonfinite_run = 0
            return loss
        self.nonfinite_skipped += 1
        self._nonfinite_run += 1
        where = self._where(batch_idx)
        if self._nonfinite_run > self.nonfinite_max_consecutive:
            raise FloatingPointError(
                f"{self._nonfinite_run} batches in a row had a non-finite training loss (the last {where}): more "
                f"than nonfinite_max_consecutive={self.nonfinite_max_consecutive}. The run has diverged; lower the "
                "learning rate or look for NaN/inf in the data. The last checkpoint keeps the last good weights."
            )
        if self.nonfinite_skipped > max(self.nonfinite_max_consecutive,
                                        self.nonfinite_max_fraction * self._batches_seen):  # fmt: skip
            raise FloatingPointError(
                f"{self.nonfinite_skipped} of {self._batches_seen} training batches had a non-finite loss (the last "
                f"{where}): more than nonfinite_max_fraction={self.nonfinite_max_fraction:g} of them. Lower the "
                "learning rate or look for NaN/inf in the data. The last checkpoint keeps the last good weights."
            )
        rank_zero_warn(f"Skipping a batch with a non-finite training loss ({float(loss.detach())}) "
                       f"{where}; {self.nonfinite_skipped} skipped so far.")  # fmt: skip
        self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True, on_epoch=False)
        return None  # Lightning skips the backward and the optimizer step

    def _where(self, batch_idx: int) -> str:
        return f"at global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        losses, self._pending_losses = self._pending_losses, []
        # fp16 mixed precision's loss scaler expects inf gradients and skips those steps itself.
        fp16 = getattr(self.trainer, "precision", "") in ("16-mixed", "16")
        grads = [] if fp16 else [p.grad for group in optimizer.param_groups for p in group["params"]
                                 if p.grad is not None]  # fmt: skip
        checked = [loss.float().reshape(-1) for loss, _ in losses]
        if grads:
            checked.append(torch.stack(torch._foreach_norm(grads)).float())
        if not checked or bool(torch.isfinite(torch.cat(checked)).all()):  # the step's one host sync
            return
        for loss, batch_idx in losses:
            if not torch.isfinite(loss).all():
                raise FloatingPointError(
                    f"Non-finite training loss ({float(loss)}) {self._where(batch_idx)}. The run stops here, so the "
                    "last checkpoint keeps the last good weights. Look for NaN/inf in the data or a too high learning "
                    "rate; set the task's nonfinite: skip to skip such batches instead."
                )
        names = {id(p): n for n, p in self.named_parameters()}
        bad = [names.get(id(p), "?") for group in optimizer.param_groups for p in group["params"]
               if p.grad is not None and not torch.isfinite(p.grad).all()]  # fmt: skip
        raise FloatingPointError(
            f"Non-finite gradient at global step {self.global_step} (epoch {self.current_epoch}) in "
            f"{len(bad)} parameter(s): {', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''}. The run stops before "
            "the optimizer step, so the last checkpoint keeps the last good weights."
        )

    # ---- the teacher ----------------------------------------------------------------------------------

    @property
    def teacher(self) -> nn.Module | None:
        """The frozen teacher network (None without ``teacher:`` or before fit start)."""
        return self._teacher

    def teacher_forward(self, *args: Any, **kwargs: Any) -> Any:
        """The teacher's output for the student's inputs: no gradients, eval mode, on the student's device and in its
        floating dtype (under ``precision: bf16-true`` Lightning casts the student and its inputs, not the teacher,
        which is no submodule)."""
        teacher = self._teacher
        if teacher is None:
            raise RuntimeError("teacher_forward: this task has no teacher (set teacher: in the recipe).")
        param = next(teacher.parameters(), None)
        if param is not None and param.device != self.device:
            teacher.to(self.device)
        dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), None)
        if param is not None and dtype is not None and param.dtype != dtype:
            teacher.to(dtype)
        with torch.no_grad():
            return teacher(*args, **kwargs)

    def distilling(self) -> bool:
        """Whether a distillation term is added to the training loss."""
        return self._teacher is not None and self.distill_weight > 0

    def on_fit_start(self) -> None:
        if self.teacher_spec is None:
            return
        if self._teacher is None:
            object.__setattr__(self, "_teacher", load_teacher(self.teacher_spec).to(self.device))
            rank_zero_info(f"Distilling from {describe_teacher(self.teacher_spec)} (weight {self.distill_weight}, "
                           f"temperature {self.distill_temperature}).")  # fmt: skip
        # A resume never re-fits: the checkpoint holds the fitted (and trained) weights. ckpt_path too, because some
        # strategies restore the checkpoint only after this hook.
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if self.fit_norms and not self.norms_fitted and not resuming:
            self._fit_student_norms()

    def _calibration_batches(self) -> list[Any]:
        data = self.trainer.datamodule if self._trainer is not None else None
        if data is None:
            raise ValueError("fit_norms needs the training data: run the task with a DataModule.")
        batches = []
        for batch in data.train_dataloader():
            batch = self.trainer.precision_plugin.convert_input(batch)  # as Lightning's loop does: bf16-true etc.
            batches.append(self.trainer.strategy.batch_to_device(batch, self.device))
            if len(batches) == self.fit_norms:
                break
        if not batches:
            raise ValueError("fit_norms: the training dataloader yielded no batch.")
        return batches

    def _fit_student_norms(self) -> None:
        """Start the student from the teacher's weights and fit its point-wise norms (all ranks identical)."""
        references = teacher_references(self.model, self._teacher)
        args, kwargs = self.calibration_call(self._calibration_batches())
        init_student(self.model, self._teacher)
        report = fit_pointwise_norms(self.model, references, forward=lambda net: net(*args, **kwargs))
        # Each rank fitted on its own batches: take rank 0's parameters so every replica starts identical (in place,
        # tensor by tensor: no pickled copies of the model on one device).
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for p in self.model.parameters():
                torch.distributed.broadcast(p.data, src=0)
        rank_zero_info(str(report))
        self.norms_fitted = True
        self.alpha_calibrated = True  # the fit set every alpha: an alpha_init="auto" calibration must not undo it

    # ---- alpha calibration ----------------------------------------------------------------------------

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.alpha_calibrated:
            return
        auto = [m for m in self.model.modules() if isinstance(m, PointwiseNorm) and m.alpha_auto]
        if auto:
            args, kwargs = self.model_inputs(batch)
            report = calibrate_alpha(self.model, None, target=self.calibration_target, only_auto=True,
                                     forward=lambda net: net(*args, **kwargs))  # fmt: skip
            # Each rank saw its own batch: take rank 0's alphas so every replica starts identical.
            alphas = self.trainer.strategy.broadcast([m.alpha.detach().clone() for m in auto], src=0)
            with torch.no_grad():
                for m, a in zip(auto, alphas):
                    m.alpha.copy_(a.to(m.alpha.device))
            rank_zero_info(str(report))
        self.alpha_calibrated = True

    # ---- checkpoints ----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CALIBRATED_KEY] = self.alpha_calibrated
        checkpoint[NORMS_FITTED_KEY] = self.norms_fitted
        checkpoint[TASK_KEY] = self.declaration()
        # The latest validation metrics, for `derf-zoo export` (they belong to the weights being saved).
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint[METRICS_KEY] = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
        # Last: Lightning calls this hook after the callbacks' (an EMA has already swapped its weights in).
        record_checksum(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # First thing on a resume: Lightning calls this before it restores the weights and the optimizer.
        source = str(self._trainer.ckpt_path) if self._trainer is not None and self._trainer.ckpt_path else None
        if not verify_checksum(checkpoint, source):
            rank_zero_warn(f"Checkpoint {source or '(dict)'} has no derf_zoo checksum (written before checksums "
                           "were recorded): loading it without verifying its bytes.")  # fmt: skip
        # A resumed run keeps its calibrated alphas (they are in the state dict); never recalibrate.
        self.alpha_calibrated = bool(checkpoint.get(CALIBRATED_KEY, True))
        self.norms_fitted = bool(checkpoint.get(NORMS_FITTED_KEY, True))  # a resumed student is never re-fitted

