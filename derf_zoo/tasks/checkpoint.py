"""A derf_zoo task's Lightning checkpoint, in one place: what the task writes into it and how it is read back.

Writing: :meth:`derf_zoo.tasks.Task.on_save_checkpoint` stores the task's declaration (:data:`TASK_KEY`), the
validation metrics of the saved weights (:data:`METRICS_KEY`) and, last, a sha256 of each saved section
(:data:`SECTIONS`, :func:`record_checksum`); a resume checks it (:func:`verify_checksum`) before Lightning restores
anything.

Reading: :func:`read_checkpoint` loads a file with ``torch.load(weights_only=True)`` (nothing is unpickled: at most a
``torch.optim`` class is allowed by name), verifies its checksum, and returns a :class:`TaskCheckpoint` that answers
which task wrote it, which network weights it holds (EMA or raw), what metrics it recorded, and builds the network
from the recorded registry name. ``derf-zoo export`` / ``sample``, a ``.ckpt`` teacher and a ``.ckpt`` backbone all
read checkpoints through it.

``torch.load`` notices a truncated file, but not flipped bytes inside a tensor: a checkpoint whose AdamW
``exp_avg`` was corrupted on disk (or in a copy) would resume without a word and train on from the damage; the
checksum is what catches it.
"""

from __future__ import annotations

import hashlib
import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

    from derf_zoo.tasks.base import Task

__all__ = ["CALIBRATED_KEY", "CHECKSUM_KEY", "METRICS_KEY", "NORMS_FITTED_KEY", "SECTIONS", "TASK_KEY",
           "CorruptCheckpointError", "TaskCheckpoint", "import_class", "load_lightning_checkpoint", "network_weights",
           "optimizer_classes", "read_checkpoint", "record_checksum", "recorded_metrics", "section_digests",
           "task_class", "verify_checksum"]  # fmt: skip

#: the keys a task adds to a Lightning checkpoint
CALIBRATED_KEY = "derf_zoo_alpha_calibrated"
METRICS_KEY = "derf_zoo_val_metrics"
TASK_KEY = "derf_zoo_task"
NORMS_FITTED_KEY = "derf_zoo_norms_fitted"
CHECKSUM_KEY = "derf_zoo_checksum"
#: the parts of a Lightning checkpoint that hold training state: the weights (with an EMA, the averaged ones),
#: the optimizer and scheduler states, and the raw weights and averaging state of Lightning's weight averaging.
SECTIONS = ("state_dict", "optimizer_states", "lr_schedulers", "current_model_state", "averaging_state")
#: the prefix of the network's weights in the task's state dict (the task holds the network as ``self.model``)
NETWORK_PREFIX = "model."


# ---- the checksum --------------------------------------------------------------------------------------------


class CorruptCheckpointError(RuntimeError):
    """A checkpoint's saved state does not match the checksum recorded in it."""


def _feed(h: Any, value: Any) -> None:
    """Hash ``value`` in a deterministic order: mappings by sorted key, sequences in order, tensors by dtype,
    shape and raw bytes (bit-exact, also for bfloat16 and on any device), anything else by ``repr``."""
    if isinstance(value, torch.Tensor):
        t = value.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        h.update(f"M{len(value)}".encode())
        for key in sorted(value, key=repr):
            h.update(f"K{key!r}".encode())
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:  # numbers, strings, None: what optimizer param groups and scheduler states hold
        h.update(f"V{value!r}".encode())


def section_digests(checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """sha256 (hex) of each of :data:`SECTIONS` that ``checkpoint`` holds."""
    digests = {}
    for section in SECTIONS:
        if section in checkpoint:
            h = hashlib.sha256()
            _feed(h, checkpoint[section])
            digests[section] = h.hexdigest()
    return digests


def record_checksum(checkpoint: dict[str, Any]) -> None:
    """Store the digests of the sections ``checkpoint`` holds under :data:`CHECKSUM_KEY` (call it last)."""
    checkpoint[CHECKSUM_KEY] = {"algorithm": "sha256", "sections": section_digests(checkpoint)}


def verify_checksum(checkpoint: Mapping[str, Any], source: str | None = None) -> bool:
    """Check the digests recorded in ``checkpoint``; False when it records none (a file from before checksums).

    Args:
        checkpoint: the loaded checkpoint.
        source: the file it was read from, for the error message.

    Raises:
        CorruptCheckpointError: a recorded section is missing or its bytes differ, naming the file and the sections.
    """
    recorded = checkpoint.get(CHECKSUM_KEY)
    if not recorded:
        return False
    expected = recorded.get("sections", {})
    actual = section_digests({k: checkpoint[k] for k in expected if k in checkpoint})
    bad = [s for s in expected if actual.get(s) != expected[s]]
    if bad:
        what = ", ".join(f"{s} ({'missing' if s not in actual else 'bytes differ'})" for s in bad)
        raise CorruptCheckpointError(
            f"Checkpoint {source or '(given as a dict)'} is corrupted: the {recorded.get('algorithm', 'sha256')} of "
            f"its saved state does not match the checksum written with it, in {what}. Do not resume from it: use an "
            "older checkpoint of the run (--ckpt_path PATH), or start again (--overwrite)."
        )
    return True


# ---- loading --------------------------------------------------------------------------------------------------


def optimizer_classes() -> list[type]:
    """The ``torch.optim`` optimizer classes: what a checkpoint may name besides plain data.

    A task built in Python records its optimizer argument, often a ``torch.optim`` class, in its hyperparameters.
    Allowing those classes by name executes nothing; everything else still has to be plain data.
    """
    return [c for c in vars(torch.optim).values() if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]


def load_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with ``weights_only=True`` (derf_zoo's tasks store only plain data, and at most
    a ``torch.optim`` class as the optimizer argument). The checksum is not checked here: :func:`read_checkpoint`
    does both.

    Raises:
        FileNotFoundError: no such file. ValueError: a file that is not a weights-only loadable checkpoint.
    """
    # Added for good, not in a `safe_globals` block: leaving that block removes the classes again, also for
    # Lightning's own weights_only resume that relies on them (tasks/base.py adds them at import).
    torch.serialization.add_safe_globals(optimizer_classes())
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises UnpicklingError/RuntimeError variants for corrupt or unsafe files
        raise ValueError(f"Cannot read {path} as a Lightning checkpoint with weights_only=True ({err}).") from err


# ---- what it holds --------------------------------------------------------------------------------------------


def network_weights(ckpt: Mapping[str, Any], weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The network's state dict (the task's ``model.`` weights) and a description of which weights they are.

    Args:
        ckpt: a loaded checkpoint.
        weights: ``"ema"``, ``"raw"``, or None: the EMA weights when the run averaged them, else raw.

    Raises:
        ValueError: another ``weights``, ``"ema"`` for a run without averaging, or no network weights at all.
    """
    if weights not in (None, "ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    has_ema = "current_model_state" in ckpt  # Lightning's weight averaging keeps the raw weights there
    weights = weights or ("ema" if has_ema else "raw")
    if weights == "ema" and not has_ema:
        raise ValueError("weights='ema': this checkpoint has no averaged weights (no EMAWeightAveraging callback in "
                         "its recipe); use the raw weights (weights='raw').")  # fmt: skip
    state = ckpt["current_model_state"] if weights == "raw" and has_ema else ckpt["state_dict"]
    if weights == "raw" and has_ema and all(torch.equal(v, ckpt["state_dict"][k]) for k, v in state.items()):
        warnings.warn("This checkpoint was written after training ended, when Lightning had already copied the EMA "
                      "weights into the model: its 'raw' weights are the EMA weights. Export a checkpoint written "
                      "during training for the raw ones.", stacklevel=3)  # fmt: skip
    kind = {"ema": "EMA (exponential moving average) of the training weights",
            "raw": "raw training weights (no averaging)"}[weights if has_ema else "raw"]  # fmt: skip
    net = {k[len(NETWORK_PREFIX) :]: v for k, v in state.items() if k.startswith(NETWORK_PREFIX)}
    if not net:
        raise ValueError("The checkpoint's state_dict has no 'model.' weights: not a derf_zoo task checkpoint.")
    return net, kind


def recorded_metrics(ckpt: Mapping[str, Any]) -> dict[str, float]:
    """The validation metrics the task recorded with these weights, as its declaration says to report them
    (``{"acc1": 99.2, "loss": 0.05}``; accuracies x100). Empty when the checkpoint declares no task."""
    declaration = ckpt.get(TASK_KEY) or {}
    recorded = ckpt.get(METRICS_KEY) or {}
    out = {}
    for metric in declaration.get("metrics", []):
        value = recorded.get(f"val/{metric['name']}")
        if value is not None:
            out[metric["name"]] = 100.0 * value if metric.get("percent") else value
    return out


def import_class(class_path: str, named_by: str = "the checkpoint") -> Any:
    """The object a dotted ``class_path`` names (a recipe's or checkpoint's ``class_path``).

    Raises:
        ValueError: it cannot be imported; the message says what named it.
    """
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"Cannot import {class_path!r} named by {named_by} ({err}).") from err


def task_class(ckpt: Mapping[str, Any]) -> type[Task]:
    """The task class that wrote ``ckpt`` (its declaration; for older checkpoints, the CLI's ``_class_path``).

    Raises:
        ValueError: the checkpoint names no task, or a class that is not a derf_zoo task.
    """
    from derf_zoo.tasks.base import Task

    class_path = (ckpt.get(TASK_KEY) or {}).get("class_path") or (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if not class_path:
        raise ValueError("The checkpoint does not say which task wrote it: not a checkpoint of `derf-zoo fit`.")
    cls = import_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"The checkpoint was written by {class_path}, which is not a derf_zoo task.")
    return cls


@dataclass(frozen=True)
class TaskCheckpoint:
    """A loaded (and checksum-verified) checkpoint of a derf_zoo task; :func:`read_checkpoint` makes one.

    Attributes:
        data: the checkpoint as ``torch.load`` returned it.
        source: the file it was read from (error messages name it).
        verified: whether it carried a checksum (False: a file from before checksums, read unverified).
    """

    data: dict[str, Any]
    source: str
    verified: bool

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        """The task's saved arguments (``model``, ``model_args``, ``teacher``, ...)."""
        return self.data.get("hyper_parameters") or {}

    @property
    def epoch(self) -> int | None:
        """The epoch Lightning recorded (None when absent)."""
        return self.data.get("epoch")

    @property
    def global_step(self) -> int | None:
        """The optimizer step Lightning recorded (None when absent)."""
        return self.data.get("global_step")

    def task_class(self) -> type[Task]:
        """The task class that wrote the checkpoint (see :func:`task_class`)."""
        return task_class(self.data)

    def network_weights(self, weights: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
        """The network's state dict and which weights they are (see :func:`network_weights`)."""
        return network_weights(self.data, weights)

    def recorded_metrics(self) -> dict[str, float]:
        """The validation metrics recorded with the weights, as a card reports them (see :func:`recorded_metrics`)."""
        return recorded_metrics(self.data)

    def build_network(self, weights: str | None = None) -> tuple[nn.Module, str]:
        """The network rebuilt from the recorded registry name and ``model_args``, with its weights loaded strictly.

        Args:
            weights: ``"ema"``, ``"raw"`` or None (EMA when the run averaged its weights).

        Returns:
            (the network in eval mode, a description of which weights it holds).

        Raises:
            ValueError: the task was given a built module rather than a registry name (the checkpoint cannot
                rebuild it), bad ``weights``, or weights that do not fit the rebuilt network (WeightsMismatchError).
        """
        from derf_zoo.tasks.base import build_network
        from derf_zoo.weights.state_dict import load_into

        hparams = self.hyper_parameters
        if not isinstance(hparams.get("model"), str):
            raise ValueError(f"{self.source}: its task was given a built module, not a registry name, so the network "
                             "cannot be rebuilt from the checkpoint; save it with model.save_pretrained(folder) from "
                             "Python and use the folder instead.")  # fmt: skip
        net, kind = self.network_weights(weights)
        model = build_network(hparams["model"], hparams.get("model_args"))
        load_into(model, net, source=self.source)
        return model.eval(), kind

    def datamodule(self) -> tuple[Any, str]:
        """(the run's DataModule rebuilt from its recorded arguments, a description of it).

        Raises:
            ValueError: the checkpoint does not record its DataModule (runs not started with ``derf-zoo fit``).
        """
        hparams = dict(self.data.get("datamodule_hyper_parameters") or {})
        class_path = hparams.pop("_class_path", None)
        if class_path is None:
            raise ValueError(f"{self.source} does not record its DataModule's class (runs started with derf-zoo fit "
                             "do): its validation data cannot be rebuilt.")  # fmt: skip
        hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
        return import_class(class_path)(**hparams), f"{class_path.rpartition('.')[2]}({hparams})"

    def datamodule_name(self) -> str | None:
        """The class name of the run's DataModule, or None when not recorded."""
        class_path = (self.data.get("datamodule_hyper_parameters") or {}).get("_class_path", "")
        return class_path.rpartition(".")[2] or None


def read_checkpoint(path: str | Path, *, verify: bool = True) -> TaskCheckpoint:
    """Load a derf_zoo task checkpoint weights-only and verify its checksum.

    Args:
        path: the ``.ckpt`` file (``last.ckpt`` of ``derf-zoo fit``).
        verify: check the recorded checksum (a checkpoint from before checksums reads unverified either way).

    Raises:
        FileNotFoundError: no such file (a folder is named as one). ValueError: not a weights-only loadable
        checkpoint. CorruptCheckpointError: its bytes do not match the checksum written with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}" + (" (it is a folder)." if path.is_dir() else "."))
    data = load_lightning_checkpoint(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, not a Lightning checkpoint.")
    verified = verify_checksum(data, str(path)) if verify else False
    return TaskCheckpoint(data=data, source=str(path), verified=verified)
