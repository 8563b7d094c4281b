"""Lightning checkpoint -> Hub folder, with the EMA or the raw weights, and the metrics of the run or re-measured."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from derf_zoo.hub.folder import save_pretrained

__all__ = ["export_checkpoint", "load_lightning_checkpoint"]


def load_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with ``weights_only=True`` (derf_zoo's tasks store only plain data)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises UnpicklingError/RuntimeError variants for corrupt or unsafe files
        raise ValueError(f"Cannot read {path} as a Lightning checkpoint with weights_only=True ({err}).") from err


def _network_weights(ckpt: dict[str, Any], weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    has_ema = "current_model_state" in ckpt  # Lightning's weight averaging keeps the raw weights there
    weights = weights or ("ema" if has_ema else "raw")
    if weights == "ema" and not has_ema:
        raise ValueError("--weights ema: this checkpoint has no averaged weights (no EMAWeightAveraging callback in "
                         "its recipe); export --weights raw.")  # fmt: skip
    state = ckpt["current_model_state"] if weights == "raw" and has_ema else ckpt["state_dict"]
    if weights == "raw" and has_ema and all(torch.equal(v, ckpt["state_dict"][k]) for k, v in state.items()):
        warnings.warn("This checkpoint was written after training ended, when Lightning had already copied the EMA "
                      "weights into the model: its 'raw' weights are the EMA weights. Export a checkpoint written "
                      "during training for the raw ones.", stacklevel=3)  # fmt: skip
    kind = {"ema": "EMA (exponential moving average) of the training weights",
            "raw": "raw training weights (no averaging)"}[weights if has_ema else "raw"]  # fmt: skip
    prefix = "model."
    net = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not net:
        raise ValueError("The checkpoint's state_dict has no 'model.' weights: not a derf_zoo task checkpoint.")
    return net, kind


def _build_from_hparams(hparams: dict[str, Any]) -> nn.Module:
    from derf_zoo.models import create_model

    model = hparams.get("model")
    if not isinstance(model, str):
        raise ValueError("This checkpoint's task was given a module, not a registry name; save the network with "
                         "derf_zoo.hub.save_pretrained(model, folder) from Python instead.")  # fmt: skip
    return create_model(model, **(hparams.get("model_args") or {}))


def _run_metrics(ckpt: dict[str, Any]) -> dict[str, float]:
    """The validation metrics the task recorded when this checkpoint was written (they match its weights)."""
    recorded = ckpt.get("derf_zoo_val_metrics") or {}
    return {k.split("/")[-1]: 100 * v if "acc" in k else v for k, v in recorded.items() if "acc" in k}


def _evaluate(model: nn.Module, ckpt: dict[str, Any]) -> tuple[dict[str, float], str]:
    hparams = dict(ckpt.get("datamodule_hyper_parameters") or {})
    class_path = hparams.pop("_class_path", None)
    if class_path is None:
        raise ValueError("--eval needs the datamodule's class in the checkpoint (runs started with derf-zoo fit).")
    hparams = {k: v for k, v in hparams.items() if not k.startswith("_")}
    module, _, cls = class_path.rpartition(".")
    data = getattr(importlib.import_module(module), cls)(**hparams)
    data.setup("validate")
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            correct += int((model(x).argmax(-1) == y).sum())
            total += len(y)
    protocol = f"Top-1 re-measured by `derf-zoo export --eval` on the {total} validation images of {cls}({hparams})."
    return {"acc1": 100.0 * correct / total}, protocol


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
) -> tuple[Path, dict[str, float]]:
    """Turn a derf_zoo Lightning checkpoint into a Hub folder.

    Args:
        ckpt_path: ``last.ckpt`` (or any checkpoint) of ``derf-zoo fit``.
        out: the folder to write.
        weights: ``"ema"``, ``"raw"``, or None (default): the EMA weights when the run averaged them, else raw.
        evaluate: re-measure top-1 on the validation split of the run's datamodule instead of taking the
            metric the checkpoint recorded.
        name: ``architecture.tag`` for the card's usage snippet.
        license / dataset / split / recipe: for the model card.

    Returns:
        (folder, metrics).
    """
    if weights not in (None, "ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}.")
    ckpt = load_lightning_checkpoint(ckpt_path)
    hparams = ckpt.get("hyper_parameters") or {}
    net, kind = _network_weights(ckpt, weights)
    model = _build_from_hparams(hparams)
    from derf_zoo.hub.state_dict import load_into

    load_into(model, net, source=str(ckpt_path))
    if evaluate:
        metrics, protocol = _evaluate(model, ckpt)
    else:
        metrics = _run_metrics(ckpt)
        protocol = f"Metric recorded by the run at step {ckpt.get('global_step')} (validation split)."
    data_name = dataset or (ckpt.get("datamodule_hyper_parameters") or {}).get("_class_path", "").rpartition(".")[2]
    card = {"metrics": metrics, "dataset": data_name or None, "split": split or "validation", "name": name,
            "weights_kind": kind, "produced_by": f"trained with derf_zoo, exported from {Path(ckpt_path).name} "
            f"(epoch {ckpt.get('epoch')}, step {ckpt.get('global_step')})", "license": license,
            "eval_protocol": protocol, "recipe": recipe}  # fmt: skip
    return save_pretrained(model, out, card=card), metrics
