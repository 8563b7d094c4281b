"""DNA sequence classification on the task contract: mean-pooled backbone features + a linear head, top-1.

The GenomicBenchmarks protocol of HyenaDNA and Caduceus: the pretrained LM's hidden states
(``backbone.forward_features(input_ids) -> (B, L, D)``) are averaged over the real (non-``[PAD]``) tokens and a
fresh linear layer maps them to class logits; the whole network is fine-tuned with cross entropy. The backbone is
any module with that method (HyenaDNA, Caduceus or an injected one); its LM head stays in the module unused.

Where the backbone weights come from:

- a registry name with released weights: ``model="hyenadna_tiny_1k.<tag>"``, ``model_args={"pretrained": True}``;
- ``init_from``: a ``DNALanguageModeling`` Lightning checkpoint (``.ckpt``; its ``model.`` weights, EMA when it has
  them), a ``.safetensors`` file, a Hub folder (``model.safetensors``) or a released name (``"arch.tag"``), loaded
  strictly into the backbone (every key and shape checked; nothing is written on a mismatch). The head is always
  new. A Caduceus-style reverse-complement average of the logits at inference is ``rc_average=True``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from derf_zoo._validate import check_int
from derf_zoo.data.dna import A_ID, PAD_ID, reverse_complement_ids
from derf_zoo.models._context import check_context
from derf_zoo.tasks.base import MetricSpec, Task, module_args
from derf_zoo.tasks.classification import top1_and_loss
from derf_zoo.tasks.distill import kl_to_teacher
from derf_zoo.tasks.schedules import Schedule

__all__ = ["DNASequenceClassifier", "SequenceClassification", "backbone_state_dict", "feature_dim"]


def feature_dim(backbone: nn.Module) -> int:
    """Width ``D`` of ``backbone.forward_features``: its ``num_features`` (timm convention) or ``d_model``, else
    measured on an 8-base input."""
    if not callable(getattr(backbone, "forward_features", None)):
        raise TypeError(f"{type(backbone).__name__} has no forward_features(input_ids) -> (B, L, D) method; a "
                        "sequence classifier needs the backbone's hidden states.")  # fmt: skip
    for name in ("num_features", "d_model"):
        value = getattr(backbone, name, None)
        if isinstance(value, int) and value > 0:
            return value
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        param = next(backbone.parameters(), None)
        probe = torch.full((1, 8), A_ID, dtype=torch.long, device=param.device if param is not None else "cpu")
        out = backbone.forward_features(probe)
    backbone.train(was_training)
    if out.dim() != 3:
        raise ValueError(f"forward_features must return (B, L, D) hidden states, got shape {tuple(out.shape)}.")
    return int(out.shape[-1])


class DNASequenceClassifier(nn.Module):
    """``backbone.forward_features`` -> mean over non-pad tokens -> dropout -> linear head.

    For an RC-equivariant backbone (``backbone.rcps``, Caduceus-PS: hidden state ``[forward half, reverse-complement
    half flipped in length and channels]``) the two halves are pooled separately, the reverse-complement half's
    channels flipped back, and ONE shared ``d_model -> num_classes`` head scores each; the logits are averaged.
    Reverse complementing the input swaps the two pooled halves, so the logits are RC-invariant by construction, as in
    the reference's ``CaduceusForSequenceClassification`` (kuleshov-group/caduceus), which averages the two
    ``score`` outputs. The invariance is to the strand flip of the whole row, padding included
    (``reverse_complement_ids(ids)`` moves left padding to the right): pad tokens are inputs of the scans, so
    reverse-complementing only the non-pad run in place changes the hidden states.

    Args:
        backbone: a module with ``forward_features(input_ids) -> (B, L, D)``.
        num_classes: outputs of the head.
        dropout: dropout before the head.
        rc_average: in eval mode, average the logits of a sequence and of its reverse complement (padding kept in
            place), as Caduceus-Ph's post-hoc conjoining does.
        pad_id: the padding token excluded from the mean.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0, rc_average: bool = False,
                 pad_id: int = PAD_ID) -> None:  # fmt: skip
        super().__init__()
        check_int("num_classes", num_classes, 2)
        self.backbone = backbone
        self.num_classes, self.rc_average, self.pad_id = num_classes, rc_average, pad_id
        self.num_features = feature_dim(backbone)
        self.rc_equivariant = bool(getattr(backbone, "rcps", False))
        if self.rc_equivariant and self.num_features % 2:
            raise ValueError(f"An RC-equivariant backbone (rcps=True) has a forward and a reverse-complement half, "
                             f"so its width must be even; got {self.num_features}.")  # fmt: skip
        self.head_drop = nn.Dropout(dropout)
        head_in = self.num_features // 2 if self.rc_equivariant else self.num_features
        self.head = nn.Linear(head_in, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @property
    def max_seq_len(self) -> int | None:
        return getattr(self.backbone, "max_seq_len", None)

    def pooled(self, input_ids: Tensor) -> Tensor:
        """Mean of the hidden states over the non-pad tokens, ``(B, D)`` (an all-pad row pools to zeros).

        For an RC-equivariant backbone ``(B, 2, D/2)``: the forward half and the reverse-complement half (its
        channels flipped back), pooled separately.
        """
        hidden = self.backbone.forward_features(input_ids)
        keep = (input_ids != self.pad_id).unsqueeze(-1).to(hidden.dtype)
        if self.rc_equivariant:
            half = hidden.shape[-1] // 2
            # The RC half is stored flipped in length and channels, so its position l already describes input
            # token l (which the padding mask indexes); flipping its channels back gives the head's channel order.
            # (The reference flips length too, harmless there: its plain mean covers every position.)
            hidden = torch.stack([hidden[..., :half], hidden[..., half:].flip(-1)], dim=-2)
            keep = keep.unsqueeze(-1)
        return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1.0)

    def _logits(self, input_ids: Tensor) -> Tensor:
        logits = self.head(self.head_drop(self.pooled(input_ids)))
        # RC-equivariant: one shared head scored each strand's pooled half; their mean is RC-invariant.
        return logits.mean(dim=-2) if self.rc_equivariant else logits

    def forward(self, input_ids: Tensor) -> Tensor:
        logits = self._logits(input_ids)
        if self.rc_average and not self.training:
            logits = 0.5 * (logits + self._logits(reverse_complement_ids(input_ids, pad_id=self.pad_id)))
        return logits


def backbone_state_dict(source: str | Path) -> dict[str, Tensor]:
    """The network weights of ``source``: a Lightning ``.ckpt`` (its ``model.`` weights), a ``.safetensors`` file, a
    Hub folder or a released name (``"arch.tag"``)."""
    from derf_zoo.hub import read_safetensors

    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        from derf_zoo.tasks.checkpoint import read_checkpoint

        return read_checkpoint(path).network_weights()[0]  # weights-only, checksum verified
    if path.is_file() and path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"init_from={str(source)!r}: the folder has no model.safetensors.")
        return read_safetensors(path / "model.safetensors")
    if path.exists():
        raise ValueError(f"init_from={str(source)!r}: a file ending in .ckpt or .safetensors, or a Hub folder, is "
                         "expected.")  # fmt: skip
    from derf_zoo.models import create_model, list_models

    released = list_models(pretrained=True)
    if str(source) not in released:
        raise FileNotFoundError(f"init_from={str(source)!r} is neither a file, a folder nor a released name; released "
                                f"names: {', '.join(released) or 'none'}.")  # fmt: skip
    return create_model(str(source), pretrained=True).state_dict()


class SequenceClassification(Task):
    """Fine-tune a DNA backbone to classify sequences (GenomicBenchmarks, E. coli vs lambda).

    Args:
        model / model_args / optimizer / schedule: see :class:`Task`; ``model`` is the backbone (a name
            or a module with ``forward_features``).
        num_classes: classes of the new head.
        init_from: backbone weights to start from (module doc); None keeps the built weights.
        head_dropout: dropout before the head.
        rc_average: average the logits with the reverse complement's in evaluation (Caduceus-Ph).
        max_len: context limit of the inputs (default: the backbone's ``max_seq_len``, if any).
        **kwargs: the options every task shares, by keyword, forwarded to :class:`Task` (calibration_target,
            nonfinite, nonfinite_max_fraction, nonfinite_max_consecutive, teacher, fit_norms, distill_weight,
            distill_temperature, layer_decay): the recipe and ``--help`` list them with this task's own.
    """

    task_type = "text-classification"
    metrics = (
        MetricSpec("acc1", higher_is_better=True, percent=True, description="top-1 accuracy"),
        MetricSpec("loss", higher_is_better=False, description="cross entropy"),
    )

    def __init__(
        self,
        model: str | nn.Module = "hyenadna_tiny_1k",
        num_classes: int = 2,
        model_args: dict[str, Any] | None = None,
        init_from: str | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        schedule: Schedule | None = None,
        head_dropout: float = 0.0,
        rc_average: bool = False,
        max_len: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, model_args, optimizer, schedule, **kwargs)
        teacher = kwargs.get("teacher")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise ValueError("SequenceClassification distils from a teacher given as a module (a DNASequenceClassifier "
                             f"with its head); {teacher!r} names a language model, whose outputs are no class logits.")
        self.save_hyperparameters(ignore=module_args(model=model, teacher=teacher))
        if init_from is not None:
            from derf_zoo.hub import load_into

            load_into(self.model, backbone_state_dict(init_from), source=str(init_from))
        self.model = DNASequenceClassifier(self.model, num_classes, head_dropout, rc_average)
        self.num_classes, self.max_len = num_classes, max_len
        self.train_acc = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")

    def forward(self, input_ids: Tensor) -> Tensor:
        check_context(self.model, input_ids.shape[-1], self.max_len)
        return self.model(input_ids)

    def setup(self, stage: str) -> None:
        data_classes = getattr(self.trainer.datamodule, "num_classes", None) if self.trainer.datamodule else None
        if data_classes and data_classes != self.num_classes:
            raise ValueError(f"num_classes mismatch: the head has {self.num_classes} outputs but the data has "
                             f"{data_classes} classes. Set num_classes: {data_classes}.")  # fmt: skip

    # ---- the contract ----------------------------------------------------------------------------------

    def training_loss(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/acc1", self.train_acc, on_step=False, on_epoch=True)
        if self.distilling():
            distill = kl_to_teacher(logits, self.teacher_forward(x), self.distill_temperature)
            self.log("train/distill", distill, on_step=True, on_epoch=True)
            loss = loss + self.distill_weight * distill
        return loss

    def evaluation_loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="sum"), len(y)

    @classmethod
    def evaluate(cls, model: nn.Module, loader: Iterable) -> dict[str, float]:
        """Top-1 accuracy (percent) and mean cross entropy of ``model`` over ``loader``, in eval mode."""
        return top1_and_loss(model, loader)

    # ---- evaluation steps ------------------------------------------------------------------------------

    def _evaluate(self, batch: tuple[Tensor, Tensor], split: str, acc1: MulticlassAccuracy) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        acc1(logits, y)
        self.log(f"{split}/acc1", acc1, prog_bar=True, batch_size=len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc1)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc1)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)
