"""Hub folders (``config.json`` + ``model.safetensors`` + ``README.md``): save, load, push.

The layout is timm's, with derf_zoo's architecture names, so after ``import derf_zoo`` a folder also
loads with ``timm.create_model("hf-hub:org/name", pretrained=True)``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from derf_zoo.hub.card import model_card
from derf_zoo.hub.download import CONFIG_NAME, WEIGHTS_NAME, fetch_file, refuse_pickles, weights_file
from derf_zoo.hub.manifest import ReleasedWeights
from derf_zoo.hub.state_dict import load_into, read_safetensors

__all__ = ["from_pretrained", "load_pretrained", "model_config", "push_to_hub", "save_pretrained"]

FORMAT_VERSION = 1
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _saved_norm(model: nn.Module, given: Any) -> Any:
    """The norm argument as JSON: canonical spec strings, with alpha_init=auto dropped (the calibrated alphas are
    in the weights; keeping "auto" would recalibrate them away when the model is fine-tuned)."""
    from derf_zoo.norms.registry import NormFactory, get_norm_layer

    specs = getattr(model, "norm_specs", None)
    if not specs:
        return given

    def frozen(spec: str) -> str:
        factory = get_norm_layer(spec)
        if isinstance(factory, NormFactory) and factory.kwargs.get("alpha_init") == "auto":
            return repr(NormFactory(factory.name, {k: v for k, v in factory.kwargs.items() if k != "alpha_init"}))
        return spec

    per_site = {site: frozen(spec) for site, spec in specs.items()}
    return next(iter(per_site.values())) if len(set(per_site.values())) == 1 else per_site


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` of a derf_zoo model: architecture, its arguments, the data config."""
    from derf_zoo import __version__

    cfg = getattr(model, "pretrained_cfg", None) or {}
    args = getattr(model, "model_args", None)
    if not cfg.get("architecture") or args is None:
        raise ValueError(f"{type(model).__name__} was not built through derf_zoo's registry (no architecture / "
                         "model_args to record); build it with derf_zoo.create_model(...) to save it.")  # fmt: skip
    data_cfg = {k: v for k, v in cfg.items() if k not in ("architecture", "tag")}
    args = dict(args)
    if "norm" in args:
        args["norm"] = _saved_norm(model, args["norm"])
    try:
        json.dumps(args)
    except TypeError as err:
        raise ValueError(f"The model arguments of {cfg['architecture']} are not JSON-serialisable ({err}); pass norms "
                         "as spec strings, e.g. norm='derf(alpha=1.0)'.") from err  # fmt: skip
    return {
        "architecture": cfg["architecture"],
        "model_args": args,
        "num_classes": getattr(model, "num_classes", None),
        "num_features": getattr(model, "num_features", None),
        "global_pool": getattr(model, "global_pool", None),
        "pretrained_cfg": data_cfg,
        "library_name": "derf_zoo",
        "derf_zoo_version": __version__,
        "format_version": FORMAT_VERSION,
    }


def save_pretrained(model: nn.Module, folder: str | Path, *, card: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a Hub folder: config.json, model.safetensors (shared tensors handled), README.md.

    Args:
        model: a model built through derf_zoo's registry.
        folder: created if needed; files in it are overwritten.
        card: model-card fields (``metrics``, ``dataset``, ``split``, ``recipe``, ``weights_kind``,
            ``produced_by``, ``license``, ``repo_id``, ``eval_protocol``).

    Returns:
        The folder.
    """
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model_config(model)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    # Only the one standard key: safetensors writes metadata in hash order, and more keys would make the file
    # bytes (and its sha256) differ between two saves of the same weights. config.json carries the rest.
    save_model(model, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    (folder / "README.md").write_text(model_card(model, config, **dict(card or {})))
    return folder


def _read_config(path: Path, source: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{source}: cannot read {path.name} ({err}).") from err
    if "architecture" not in config or "model_args" not in config:
        raise ValueError(f"{source}: {path.name} lacks 'architecture'/'model_args'; is this a derf_zoo folder?")
    return config


def _resolve_folder(source: str, revision: str | None, cache_dir: str | Path | None) -> tuple[Path, Path]:
    """(config path, weights path) of a local folder or a Hub repo (``org/name``)."""
    local = Path(source).expanduser()
    if local.is_dir():
        refuse_pickles(local)
        return local / CONFIG_NAME, local / WEIGHTS_NAME
    if not _REPO_ID.match(source):
        raise FileNotFoundError(f"{source!r} is neither a folder nor a Hub repo id of the form 'org/name'.")
    config = fetch_file(source, CONFIG_NAME, revision=revision, cache_dir=cache_dir)
    try:
        weights = fetch_file(source, WEIGHTS_NAME, revision=revision, cache_dir=cache_dir)
    except FileNotFoundError:
        refuse_pickles(config.parent)  # a repo with only pickles gets the clearer message
        raise
    return config, weights


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
    from derf_zoo.models import create_model

    config_path, weights_path = _resolve_folder(str(source), revision, cache_dir)
    config = _read_config(config_path, str(source))
    model = create_model(config["architecture"], **{**config["model_args"], **model_args})
    model.pretrained_cfg = {**model.pretrained_cfg, **config.get("pretrained_cfg", {}),
                            "num_classes": getattr(model, "num_classes", None)}  # fmt: skip
    model.default_cfg = model.pretrained_cfg
    load_into(model, read_safetensors(weights_path), source=str(source))
    return model.eval()


def load_pretrained(model: nn.Module, weights: ReleasedWeights, cache_dir: str | Path | None = None) -> None:
    """Load released weights into a freshly built ``model`` (``create_model(..., pretrained=True)``)."""
    path = weights_file(weights, cache_dir=cache_dir)
    key_map = None
    if weights.source_format == "timm":
        from derf_zoo.models.vit import timm_to_zoo_key

        key_map = timm_to_zoo_key
    load_into(model, read_safetensors(path), source=weights.name, key_map=key_map)
    model.pretrained_cfg = {**model.pretrained_cfg, **weights.pretrained_cfg}
    model.default_cfg = model.pretrained_cfg
    model.eval()


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
) -> str:
    """Upload a Hub folder with huggingface_hub's API and return the commit hash to pin in the manifest.

    With ``dry_run`` nothing is sent: the exact set of files that would be uploaded is copied to a fresh
    folder, whose path is returned, so it can be inspected (and tested) offline.
    """
    folder = Path(folder)
    for required in (CONFIG_NAME, WEIGHTS_NAME, "README.md"):
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} is not a Hub folder: {required} is missing (write it with "
                                    "save_pretrained or `derf-zoo export`).")  # fmt: skip
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if dry_run:
        import shutil

        out = Path(tempfile.mkdtemp(prefix=f"derf_zoo_push_{repo_id.replace('/', '--')}_"))
        for p in files:
            shutil.copy2(p, out / p.name)
        return str(out)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                             commit_message=commit_message or "Upload derf_zoo weights",
                             allow_patterns=[p.name for p in files])  # fmt: skip
    return info.oid
