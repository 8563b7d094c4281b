"""Hub folders (``config.json`` + ``model.safetensors`` + ``README.md``): save, load, push.

The layout is timm's, with derf_zoo's architecture names, so after ``import derf_zoo`` a folder also
loads with ``timm.create_model("hf-hub:org/name", pretrained=True)``. This module reads and writes folders;
building a model from one is the registry's job (:func:`derf_zoo.from_pretrained`).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from derf_zoo.hub.card import model_card
from derf_zoo.hub.download import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    WeightsIntegrityError,
    fetch_file,
    refuse_pickles,
    sha256_file,
    weights_file,
)
from derf_zoo.hub.manifest import ReleasedWeights
from derf_zoo.weights import Layout, load_layout
from derf_zoo.weights.state_dict import (
    WeightsMismatchError,
    read_safetensors,
    read_safetensors_metadata,
    save_weights,
)

__all__ = [
    "check_folder",
    "load_pretrained", "model_config", "push_to_hub", "read_config", "resolve_folder", "save_pretrained",
    "weights_metadata",
]

FORMAT_VERSION = 1
#: The files a Hub folder consists of: what save_pretrained writes and push_to_hub uploads.
HUB_FILES = (CONFIG_NAME, WEIGHTS_NAME, "README.md")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _saved_norm(model: nn.Module, given: Any) -> Any:
    """The norm argument as JSON: canonical spec strings, with alpha_init=auto dropped (the calibrated alphas are
    in the weights; keeping "auto" would recalibrate them away when the model is fine-tuned)."""
    from derf_zoo.norms.registry import NormFactory, get_norm_layer

    specs = getattr(model, "norm_specs", None)
    if not specs:
        return given

    def frozen(site: str, spec: str) -> str:
        try:
            factory = get_norm_layer(spec)
        except (ValueError, TypeError) as err:
            raise ValueError(f"The norm of site {site!r} is the Python callable {spec!r}, which config.json cannot "
                             "record; build the model with a string spec (norm='derf(alpha=1.0)', or a per-site "
                             "mapping of them) to save it.") from err  # fmt: skip
        if isinstance(factory, NormFactory) and factory.kwargs.get("alpha_init") == "auto":
            return repr(NormFactory(factory.name, {k: v for k, v in factory.kwargs.items() if k != "alpha_init"}))
        return spec

    per_site = {site: frozen(site, spec) for site, spec in specs.items()}
    return next(iter(per_site.values())) if len(set(per_site.values())) == 1 else per_site


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` of a derf_zoo model: architecture, its arguments, the data config."""
    from derf_zoo import __version__

    cfg = getattr(model, "pretrained_cfg", None) or {}
    args = getattr(model, "model_args", None)
    if not cfg.get("architecture") or args is None:
        raise ValueError(f"{type(model).__name__} was not built through derf_zoo's registry (no architecture / "
                         "model_args to record); build it with derf_zoo.create_model(...) to save it.")  # fmt: skip
    # card_* are the family's model-card texts (the registry supplies them): not data, not saved
    data_cfg = {k: v for k, v in cfg.items()
                if k not in ("architecture", "tag", "task_type") and not k.startswith("card_")}  # fmt: skip
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
        "task_type": cfg.get("task_type"),
        "num_classes": getattr(model, "num_classes", None),
        "num_features": getattr(model, "num_features", None),
        "global_pool": getattr(model, "global_pool", None),
        "pretrained_cfg": data_cfg,
        "library_name": "derf_zoo",
        "derf_zoo_version": __version__,
        "format_version": FORMAT_VERSION,
    }


def save_pretrained(model: nn.Module, folder: str | Path, *, card: Mapping[str, Any] | None = None,
                    overwrite: bool = False) -> Path:  # fmt: skip
    """Write ``model`` as a Hub folder: config.json, model.safetensors (shared tensors handled), README.md.

    The folder is written next to its destination and moved into place when complete, so a failure never
    leaves half a folder; a folder that already holds files is refused unless ``overwrite``, which replaces it
    whole (no stray files from an earlier export survive to be pushed).

    Args:
        model: a model built through derf_zoo's registry.
        folder: the destination (its parent is created if needed).
        card: model-card fields (``metrics``, ``dataset``, ``split``, ``recipe``, ``weights_kind``,
            ``produced_by``, ``license``, ``repo_id``, ``eval_protocol``, ``task_type``).
        overwrite: replace an existing non-empty folder.

    Returns:
        The folder.

    Raises:
        FileExistsError: ``folder`` holds files and ``overwrite`` is False; nothing is written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another destination.")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} already holds files ({', '.join(sorted(p.name for p in folder.iterdir()))}); "
                              "nothing was written. Choose an empty folder, or pass overwrite=True "
                              "(--overwrite) to replace it.")  # fmt: skip
    config = model_config(model)  # fails early (unsaveable norms) before anything touches the disk
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_weights(model, staging / WEIGHTS_NAME, weights_metadata(config))
        config["weights_sha256"] = sha256_file(staging / WEIGHTS_NAME)  # checked by every load of this folder
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (staging / "README.md").write_text(model_card(model, config, **dict(card or {})))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def weights_metadata(config: Mapping[str, Any]) -> dict[str, str]:
    """What model.safetensors records about the model its weights belong to, checked against config.json: the
    architecture, the norm, every model argument (an added ``"timestep_freq_shift"`` changes the outputs as surely
    as another norm does) and the data config (mean, std, input size: what the inputs must look like)."""
    return {"derf_zoo.architecture": config["architecture"],
            "derf_zoo.norm": json.dumps(config["model_args"].get("norm"), sort_keys=True),
            "derf_zoo.model_args": json.dumps(config["model_args"], sort_keys=True),
            "derf_zoo.pretrained_cfg": json.dumps(config.get("pretrained_cfg") or {}, sort_keys=True)}  # fmt: skip


def _entries_differ(section: str, recorded: str, described: Any) -> str:
    """The entries of ``section`` (``model_args``, ``pretrained_cfg``) on which config.json and the weights' record
    disagree, by name."""
    try:
        saved = json.loads(recorded)
    except json.JSONDecodeError:
        return f"{section}: unreadable record in the weights"
    if not isinstance(saved, dict) or not isinstance(described, Mapping):
        return f"{section}: weights {recorded[:80]} vs config.json {json.dumps(described)[:80]}"
    keys = sorted(k for k in set(saved) | set(described) if saved.get(k, ...) != described.get(k, ...))
    shown = [f"{k}: weights {json.dumps(saved[k]) if k in saved else '(absent)'} vs config.json "
             f"{json.dumps(described[k]) if k in described else '(absent)'}" for k in keys]  # fmt: skip
    return "; ".join(shown)


def check_folder(config: Mapping[str, Any], weights_path: Path, source: str) -> None:
    """Refuse a folder whose weights are not the ones its config.json describes.

    Checks the sha256 that ``save_pretrained`` recorded in config.json (always there when the weights' metadata
    says derf_zoo wrote them: deleting it does not turn the check off), and the architecture and every model
    argument recorded in the weights' metadata against config.json (an edited ``"norm": "satursin"`` or an added
    argument would otherwise change the model the weights load into). Folders written before these records
    existed are checked for what they have.
    """
    expected = config.get("weights_sha256")
    if expected is not None:
        got = sha256_file(weights_path)
        if got != expected:
            raise WeightsIntegrityError(f"{source}: {weights_path.name} has sha256 {got}, but config.json records "
                                        f"{expected}: the weights were changed or corrupted after they were saved; "
                                        "nothing was loaded.")  # fmt: skip
    recorded = read_safetensors_metadata(weights_path)
    if expected is None and "derf_zoo.architecture" in recorded:  # our writer made it, and it always records the sha
        raise WeightsIntegrityError(f"{source}: config.json has no weights_sha256, but {weights_path.name} was "
                                    "written by derf_zoo's save_pretrained, which always records it: config.json "
                                    "was edited. Restore it (or export the folder again); nothing was loaded.")
    described = weights_metadata(config)
    sections = {"derf_zoo.model_args": config["model_args"], "derf_zoo.pretrained_cfg": config.get("pretrained_cfg")}
    differ = [_entries_differ(key.partition(".")[2], recorded[key], sections[key]) if key in sections
              else f"{key.partition('.')[2]}: weights {recorded[key]} vs config.json {value}"
              for key, value in described.items() if key in recorded and recorded[key] != value]  # fmt: skip
    if differ:
        raise WeightsMismatchError(f"{source}: config.json does not describe these weights ({'; '.join(differ)}); "
                                   "nothing was loaded. Restore config.json, or load the weights into the model "
                                   "they were trained as.")  # fmt: skip


def read_config(path: Path, source: str) -> dict[str, Any]:
    """Read a Hub folder's ``config.json`` and check that it is derf_zoo's.

    Args:
        path: the ``config.json`` file.
        source: what to call the folder in errors (its path or repository id).

    Returns:
        The config: at least ``architecture`` and ``model_args``.

    Raises:
        ValueError: the file cannot be read or parsed, or it lacks ``architecture`` / ``model_args``.
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{source}: cannot read {path.name} ({err}).") from err
    if "architecture" not in config or "model_args" not in config:
        raise ValueError(f"{source}: {path.name} lacks 'architecture'/'model_args'; is this a derf_zoo folder?")
    return config


def resolve_folder(source: str, revision: str | None, cache_dir: str | Path | None) -> tuple[Path, Path]:
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


def load_pretrained(model: nn.Module, weights: ReleasedWeights, cache_dir: str | Path | None = None,
                    layout: Layout | None = None, verify: bool = True) -> None:  # fmt: skip
    """Load released weights into a freshly built ``model`` (``create_model(..., pretrained=True)``).

    Args:
        model: the target, built with the weights' arguments.
        weights: the manifest entry.
        cache_dir: Hub cache (default ``$HF_HUB_CACHE``).
        layout: the foreign layout the weights are stored in (``weights.source_format``; the model's family
            supplies it), or None for derf_zoo's own keys.
        verify: see :func:`~derf_zoo.hub.download.weights_file` (False loads weights the manifest pins no
            sha256 for).
    """
    path = weights_file(weights, cache_dir=cache_dir, verify=verify)
    load_layout(model, read_safetensors(path), layout, source=weights.name)
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

    Only the files a Hub folder consists of (config.json, model.safetensors, README.md) are uploaded; anything
    else in the folder is skipped with a warning that names it. With ``dry_run`` nothing is sent: the exact set
    of files that would be uploaded is copied to a fresh folder, whose path is returned, so it can be inspected
    (and tested) offline.
    """
    folder = Path(folder)
    for required in HUB_FILES:
        if not (folder / required).is_file():
            raise FileNotFoundError(f"{folder} is not a Hub folder: {required} is missing (write it with "
                                    "save_pretrained or `derf-zoo export`).")  # fmt: skip
    files = [folder / name for name in HUB_FILES]
    skipped = sorted(p.name for p in folder.iterdir() if p.name not in HUB_FILES)
    if skipped:
        warnings.warn(f"push_to_hub: not uploading {', '.join(skipped)} from {folder}: a Hub folder is "
                      f"{', '.join(HUB_FILES)} only.", stacklevel=2)  # fmt: skip
    if dry_run:
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
