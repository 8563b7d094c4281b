"""One builder for every entry point: merge arguments, build, attach the data config, load weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

# The argument checks live in the leaf derf_zoo._validate; re-exported for code that imported them from here.
from derf_zoo._validate import check_int, check_positive

__all__ = ["build_model", "check_int", "check_positive"]


def build_model(
    cls: type[nn.Module],
    architecture: str,
    *,
    pretrained: bool,
    model_args: Mapping[str, Any],
    data_cfg: Mapping[str, Any],
    **kwargs: Any,
) -> nn.Module:
    """Build ``cls(**model_args, **kwargs)`` the way timm users expect.

    Handles the keywords timm's ``create_model`` passes (``pretrained_cfg``, ``pretrained_cfg_overlay``,
    ``cache_dir``), ``device``/``dtype``, sets ``model.pretrained_cfg`` (mean, std, input_size, crop_pct,
    interpolation) so ``timm.data.resolve_model_data_config(model)`` works, and with ``pretrained=True``
    loads the released weights (:func:`derf_zoo.hub.load_pretrained`), strictly. ``pretrained=True`` with
    ``pretrained_cfg_overlay={"file": PATH}`` (timm's way to load local weights) loads a ``.safetensors`` file or a
    Hub folder's ``model.safetensors`` instead (e.g. ``derf-zoo export``'s output), strictly but for the head
    (another ``num_classes`` re-initialises it, with a warning).

    Args:
        cls: the model class.
        architecture: registered architecture name.
        pretrained: load released weights.
        model_args: the architecture's defaults; ``kwargs`` override them.
        data_cfg: the architecture's data config.
    """
    tag = kwargs.pop("pretrained_tag", None)
    timm_cfg = kwargs.pop("pretrained_cfg", None)  # timm passes a tag string, a dict or a PretrainedCfg
    kwargs.pop("pretrained_model_args", None)  # timm's record of config.json's model_args (already in kwargs)
    if tag is None and timm_cfg is not None:
        tag = timm_cfg if isinstance(timm_cfg, str) else _cfg_get(timm_cfg, "tag")
    overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
    local_file = overlay.pop("file", None)  # a local path is not part of the model's config (never exported)
    cache_dir = kwargs.pop("cache_dir", None)
    verify = kwargs.pop("verify", True)  # False: load manifest weights that pin no sha256
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)

    from derf_zoo.models._registry import get_model_entry

    entry = get_model_entry(architecture)
    args = {**model_args, **kwargs}
    weights = None
    hub_source = _timm_hub_source(timm_cfg) if pretrained and local_file is None else None
    if pretrained and hub_source is None and local_file is None:
        from derf_zoo.hub import resolve_weights

        weights = resolve_weights(architecture, tag, recipe=entry.recipe, conversion=entry.conversion)
        # Arguments the weights were trained with (e.g. in_chans) come first; the caller's still win
        # where they are allowed to differ (num_classes re-initialises the head with a warning).
        args = {**model_args, **weights.model_args, **kwargs}
    model = cls(**args)
    model.model_args = args  # what save_pretrained records in config.json
    model.pretrained_cfg = {
        **data_cfg,
        **overlay,
        "architecture": architecture,
        "tag": weights.tag if weights is not None else None,  # a tag without pretrained=True loads nothing
        "num_classes": getattr(model, "num_classes", None),
        "task_type": entry.family.task_type,  # what a model card of these weights says the model does
    }
    model.default_cfg = model.pretrained_cfg  # timm's older alias
    if weights is not None:
        from derf_zoo.hub import load_pretrained

        load_pretrained(model, weights, cache_dir=cache_dir, layout=entry.family.layout(weights.source_format),
                        verify=verify)
    elif hub_source is not None:
        _load_timm_source(model, hub_source, cache_dir)
    elif pretrained and local_file is not None:
        _load_local_file(model, local_file)
    if device is not None or dtype is not None:
        model = model.to(device=device, dtype=dtype)
    return model


def _cfg_get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)


def _timm_hub_source(timm_cfg: Any) -> tuple[str, str | None] | None:
    """(repo_id, revision) when timm resolved ``timm.create_model("hf-hub:org/name", pretrained=True)``."""
    hub_id = _cfg_get(timm_cfg, "hf_hub_id")
    if not hub_id:
        return None
    repo_id, _, revision = hub_id.partition("@")
    return repo_id, revision or None


def _load_local_file(model: nn.Module, file: Any) -> None:
    """Load ``pretrained_cfg_overlay["file"]``: a ``.safetensors`` file or a folder holding ``model.safetensors``."""
    from pathlib import Path

    from derf_zoo.hub.download import WEIGHTS_NAME
    from derf_zoo.weights.state_dict import load_into, read_safetensors

    path = Path(file).expanduser()
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(
            f"pretrained_cfg_overlay file={str(file)!r}: expected an existing .safetensors file or a folder holding "
            f"{WEIGHTS_NAME} (`derf-zoo export --ckpt RUN.ckpt --out FOLDER` writes one); pickled weights "
            "(.pth, .bin, .ckpt) are never loaded here."
        )
    load_into(model, read_safetensors(path), source=str(path))
    model.eval()


def _load_timm_source(model: nn.Module, source: tuple[str, str | None], cache_dir: Any) -> None:
    from derf_zoo.hub.download import WEIGHTS_NAME, fetch_file
    from derf_zoo.weights.state_dict import load_into, read_safetensors

    repo_id, revision = source
    path = fetch_file(repo_id, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir)
    load_into(model, read_safetensors(path), source=f"hf-hub:{repo_id}")
    model.eval()
