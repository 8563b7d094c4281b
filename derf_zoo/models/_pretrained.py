"""``derf_zoo.from_pretrained``: build a model from a Hub folder or repo through the registry, then load it strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from derf_zoo.hub.folder import check_folder, read_config, resolve_folder
from derf_zoo.models._registry import create_model
from derf_zoo.weights.state_dict import load_into, read_safetensors

__all__ = ["from_pretrained"]


def from_pretrained(source: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                    **model_args: Any) -> nn.Module:  # fmt: skip
    """Load a derf_zoo Hub folder or repo: ``derf_zoo.from_pretrained("org/name")`` or ``(local_dir)``.

    Args:
        source: a local folder or a Hub repo id.
        revision: branch, tag or commit (a commit hash needs no network once cached).
        cache_dir: Hub cache (default ``$HF_HUB_CACHE``).
        **model_args: override the saved arguments (``num_classes=`` re-initialises the head, with a warning).

    Returns:
        The model in eval mode.
    """
    config_path, weights_path = resolve_folder(str(source), revision, cache_dir)
    config = read_config(config_path, str(source))
    check_folder(config, weights_path, str(source))
    model = create_model(config["architecture"], **{**config["model_args"], **model_args})
    model.pretrained_cfg = {**model.pretrained_cfg, **config.get("pretrained_cfg", {}),
                            "num_classes": getattr(model, "num_classes", None)}  # fmt: skip
    model.default_cfg = model.pretrained_cfg
    load_into(model, read_safetensors(weights_path), source=str(source))
    return model.eval()
