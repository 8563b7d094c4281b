"""``derf-zoo export``: a task's Lightning checkpoint -> a Hub folder, with the metrics its task declares.

The checkpoint says which task wrote it (``Task.declaration``); that task builds the network from the recorded
``model``/``model_args``, evaluates it on the run's validation data when asked (``--eval``), and names the task
type and metrics the model card shows. Nothing here knows a family.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

from derf_zoo.hub.folder import save_pretrained
from derf_zoo.hub.lightning_checkpoint import load_lightning_checkpoint, network_weights, recorded_metrics
from derf_zoo.hub.state_dict import load_into
from derf_zoo.tasks.base import TASK_KEY, Task, build_network
from derf_zoo.tasks.checksum import verify_checksum

__all__ = ["export_checkpoint", "import_class", "task_class"]


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


def task_class(ckpt: dict[str, Any]) -> type[Task]:
    """The task class that wrote ``ckpt`` (its declaration; for older checkpoints, the CLI's ``_class_path``)."""
    class_path = (ckpt.get(TASK_KEY) or {}).get("class_path") or (ckpt.get("hyper_parameters") or {}).get("_class_path")
    if not class_path:
        raise ValueError("The checkpoint does not say which task wrote it: not a checkpoint of `derf-zoo fit`.")
    cls = import_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"The checkpoint was written by {class_path}, which is not a derf_zoo task.")
    return cls


def _datamodule(ckpt: dict[str, Any]) -> Any:
    hparams = dict(ckpt.get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        raise ValueError("--eval needs the datamodule's class in the checkpoint (runs started with derf-zoo fit).")
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    return import_class(class_path)(**hparams), f"{class_path.rpartition('.')[2]}({hparams})"


def export_checkpoint(
    ckpt_path: str | Path,
    out: str | Path,
    *,
    weights: str | None = None,
    evaluate: bool = False,
    name: str | None = None,
    license: str = "apache-2.0",
    dataset: str | None = None,
    split: str | None = None,
    recipe: str | None = None,
    overwrite: bool = False,
) -> tuple[Path, dict[str, float]]:
    """Turn a derf_zoo Lightning checkpoint into a Hub folder.

    Args:
        ckpt_path: ``last.ckpt`` (or any checkpoint) of ``derf-zoo fit``.
        out: the folder to write (refused if it holds files, unless ``overwrite``).
        weights: ``"ema"``, ``"raw"``, or None (default): the EMA weights when the run averaged them, else raw.
        evaluate: re-measure the task's metrics on the validation split of the run's datamodule instead of
            taking the ones the checkpoint recorded.
        name: ``architecture.tag`` for the card's usage snippet.
        license / dataset / split / recipe: for the model card.
        overwrite: replace an existing folder.

    Returns:
        (folder, metrics as the card reports them).

    Raises:
        ValueError: a metric (recorded or re-measured) is not finite: such weights are never exported.
    """
    if weights not in (None, "ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    ckpt = load_lightning_checkpoint(ckpt_path)
    verify_checksum(ckpt, str(ckpt_path))  # a corrupted checkpoint is never exported (older ones carry no checksum)
    task = task_class(ckpt)
    hparams = ckpt.get("hyper_parameters") or {}
    if not isinstance(hparams.get("model"), str):
        raise ValueError("This checkpoint's task was given a module, not a registry name; save the network with "
                         "model.save_pretrained(folder) from Python instead.")  # fmt: skip
    net, kind = network_weights(ckpt, weights)
    model = build_network(hparams["model"], hparams.get("model_args"))
    load_into(model, net, source=str(ckpt_path))
    if evaluate:
        data, described = _datamodule(ckpt)
        data.setup("validate")
        metrics = task.evaluate(model, data.val_dataloader())
        protocol = f"Re-measured by `derf-zoo export --eval` on the validation split of {described}."
    else:
        metrics = recorded_metrics(ckpt)
        protocol = f"Metrics recorded by the run at step {ckpt.get('global_step')} (validation split)."
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:  # a diverged run's weights would be published with "loss: nan" on their card
        shown = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise ValueError(f"Refusing to export {ckpt_path}: its {'re-measured' if evaluate else 'recorded'} metrics are "
                         f"not finite ({shown}); the weights are damaged or the run diverged. Export a checkpoint "
                         "from before the divergence, or retrain with a lower learning rate.")  # fmt: skip
    meaning = {m.name: m.description for m in task.metrics if m.description and m.name in metrics}
    if meaning:  # what each number is (units, conditions): "loss" alone says nothing on the card
        protocol += " Metrics: " + "; ".join(f"{k}: {v}" for k, v in meaning.items()) + "."
    data_name = dataset or (ckpt.get("datamodule_hyper_parameters") or {}).get("_class_path", "").rpartition(".")[2]
    card = {"metrics": metrics, "dataset": data_name or None, "split": split or "validation", "name": name,
            "weights_kind": kind, "produced_by": f"trained with derf_zoo, exported from {Path(ckpt_path).name} "
            f"(epoch {ckpt.get('epoch')}, step {ckpt.get('global_step')})", "license": license,
            "eval_protocol": protocol, "recipe": recipe, "task_type": task.task_type}  # fmt: skip
    return save_pretrained(model, out, card=card, overwrite=overwrite), metrics
