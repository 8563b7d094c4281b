"""A released Hub folder and its manifest entry, written once for every release."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["Release", "check_free", "publish"]


@dataclass
class Release:
    """One released weight: its folder and its manifest entry (the fields of
    :class:`~derf_zoo.hub.manifest.ReleasedWeights`, in the manifest's order)."""

    name: str
    folder: Path
    entry: dict[str, Any]


def publish(model: nn.Module, dest: Path, name: str, *, recipe: str, dataset: str, split: str,
            metrics: dict[str, float], produced_by: str, eval_protocol: str, task_type: str | None = None,
            license: str = "apache-2.0", default: bool = True, overwrite: bool = False) -> Release:  # fmt: skip
    """Write ``model`` as the release folder ``dest/name`` (config.json, model.safetensors, a card with these
    fields) and return its manifest entry, the weights' sha256 pinned.

    Args:
        model: a model built through derf_zoo's registry, holding the weights to release.
        dest: the folder of release folders (the package's ``derf_zoo/checkpoints``).
        name: ``architecture.tag``.
        recipe / dataset / split / metrics / produced_by / eval_protocol / task_type / license: the card's and the
            entry's fields (``eval_protocol`` and ``task_type`` go on the card only).
        default: whether ``pretrained=True`` picks these weights for the bare architecture name.
        overwrite: replace an existing release folder (default: refuse).

    Raises:
        FileExistsError: ``dest/name`` holds files and ``overwrite`` is False; nothing is written.
    """
    card = {"metrics": metrics, "dataset": dataset, "split": split, "recipe": recipe, "produced_by": produced_by,
            "eval_protocol": eval_protocol, "license": license}  # fmt: skip
    if task_type is not None:
        card["task_type"] = task_type
    folder = model.save_pretrained(dest / name, name=name, overwrite=overwrite, **card)
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    entry = {"name": name, "embedded": f"checkpoints/{name}", "sha256": sha, "recipe": recipe, "dataset": dataset,
             "split": split, "metrics": dict(metrics), "produced_by": produced_by, "license": license,
             "default": default}  # fmt: skip
    return Release(name=name, folder=folder, entry=entry)


def check_free(dest: Path, manifest: Path, names: Iterable[str], overwrite: bool) -> None:
    """Refuse, before any training, a release whose folder or manifest entry already exists.

    Raises:
        FileExistsError: a folder ``dest/NAME`` holds files or ``manifest`` lists NAME, and ``overwrite`` is False;
            the message names them and the ``--overwrite`` flag.
    """
    if overwrite:
        return
    from derf_zoo.hub.manifest import load_manifest

    names = list(names)
    listed = {w.name for w in load_manifest(manifest)} if manifest.is_file() else set()
    taken = [n for n in names if n in listed or ((dest / n).is_dir() and any((dest / n).iterdir()))]
    if taken:
        raise FileExistsError(f"{', '.join(taken)} already released (a folder in {dest} or an entry in {manifest}); "
                              "nothing was written. Pass --overwrite to replace them.")  # fmt: skip
