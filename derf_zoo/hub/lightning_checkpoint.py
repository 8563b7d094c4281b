"""Reading a derf_zoo Lightning checkpoint safely: ``weights_only``, the network's EMA or raw weights, and what
its task recorded (the task's declaration and the validation metrics of the saved weights)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_lightning_checkpoint", "network_weights", "optimizer_classes", "recorded_metrics"]


def optimizer_classes() -> list[type]:
    # A task built in Python records its optimizer argument, often a torch.optim class, in its hyperparameters.
    # Allowing those classes by name executes nothing; everything else still has to be plain data.
    return [c for c in vars(torch.optim).values() if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]


def load_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint with ``weights_only=True`` (derf_zoo's tasks store only plain data, and at most
    a ``torch.optim`` class as the optimizer argument)."""
    # Added for good, not in a `safe_globals` block: leaving that block removes the classes again, also for
    # Lightning's own weights_only resume that relies on them (tasks/base.py adds them at import).
    torch.serialization.add_safe_globals(optimizer_classes())
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises UnpicklingError/RuntimeError variants for corrupt or unsafe files
        raise ValueError(f"Cannot read {path} as a Lightning checkpoint with weights_only=True ({err}).") from err


def network_weights(ckpt: dict[str, Any], weights: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """The network's state dict (the task's ``model.`` weights) and a description of which weights they are.

    Args:
        ckpt: a loaded checkpoint.
        weights: ``"ema"``, ``"raw"``, or None: the EMA weights when the run averaged them, else raw.
    """
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


def recorded_metrics(ckpt: dict[str, Any]) -> dict[str, float]:
    """The validation metrics the task recorded with these weights, as its declaration says to report them
    (``{"acc1": 99.2, "loss": 0.05}``; accuracies x100). Empty when the checkpoint declares no task."""
    declaration = ckpt.get("derf_zoo_task") or {}
    recorded = ckpt.get("derf_zoo_val_metrics") or {}
    out = {}
    for metric in declaration.get("metrics", []):
        value = recorded.get(f"val/{metric['name']}")
        if value is not None:
            out[metric["name"]] = 100.0 * value if metric.get("percent") else value
    return out
