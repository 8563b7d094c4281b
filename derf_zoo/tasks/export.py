"""``derf-zoo export``: a task's Lightning checkpoint -> a Hub folder, with the metrics its task declares.

The checkpoint says which task wrote it (``Task.declaration``); that task builds the network from the recorded
``model``/``model_args``, evaluates it on the run's validation data when asked (``evaluate=True``), and names the
task type and metrics the model card shows. Reading the checkpoint is :mod:`derf_zoo.tasks.checkpoint`'s; nothing
here knows a family.
"""

from __future__ import annotations

import math
from pathlib import Path

from derf_zoo.hub.folder import save_pretrained
from derf_zoo.tasks.checkpoint import import_class, read_checkpoint, task_class

# import_class and task_class lived here before tasks/checkpoint.py; re-exported for imports written then
__all__ = ["export_checkpoint", "import_class", "task_class"]


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
        ValueError: a metric (recorded or re-measured) is not finite: such weights are never exported; a file that
            is not a task checkpoint. CorruptCheckpointError: its bytes do not match its checksum (older checkpoints
            carry none and are read unverified).
    """
    if weights not in (None, "ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    ckpt = read_checkpoint(ckpt_path)  # a corrupted checkpoint is never exported
    task = ckpt.task_class()
    model, kind = ckpt.build_network(weights)
    if evaluate:
        data, described = ckpt.datamodule()
        data.setup("validate")
        metrics = task.evaluate(model, data.val_dataloader())
        protocol = f"Re-measured by `derf-zoo export --eval` on the validation split of {described}."
    else:
        metrics = ckpt.recorded_metrics()
        protocol = f"Metrics recorded by the run at step {ckpt.global_step} (validation split)."
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:  # a diverged run's weights would be published with "loss: nan" on their card
        shown = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise ValueError(f"Refusing to export {ckpt_path}: its {'re-measured' if evaluate else 'recorded'} metrics are "
                         f"not finite ({shown}); the weights are damaged or the run diverged. Export a checkpoint "
                         "from before the divergence, or retrain with a lower learning rate.")  # fmt: skip
    meaning = {m.name: m.description for m in task.metrics if m.description and m.name in metrics}
    if meaning:  # what each number is (units, conditions): "loss" alone says nothing on the card
        protocol += " Metrics: " + "; ".join(f"{k}: {v}" for k, v in meaning.items()) + "."
    card = {"metrics": metrics, "dataset": dataset or ckpt.datamodule_name(), "split": split or "validation",
            "name": name, "weights_kind": kind, "produced_by": f"trained with derf_zoo, exported from "
            f"{Path(ckpt_path).name} (epoch {ckpt.epoch}, step {ckpt.global_step})", "license": license,
            "eval_protocol": protocol, "recipe": recipe, "task_type": task.task_type}  # fmt: skip
    return save_pretrained(model, out, card=card, overwrite=overwrite), metrics
