"""The manifest of released weights (``derf_zoo/checkpoints/manifest.yaml``): what exists, where, how it was made.

``pretrained=True`` resolves only through it, so a name that is not listed never loads random weights:
it raises an error naming the recipe that trains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["NoPretrainedWeightsError", "ReleasedWeights", "load_manifest", "released_weights", "resolve_weights"]

MANIFEST = "checkpoints/manifest.yaml"
_REQUIRED = ("name", "produced_by", "license", "dataset")


class NoPretrainedWeightsError(ValueError):
    """``pretrained=True`` for an architecture or tag with no released weights."""


@dataclass(frozen=True)
class ReleasedWeights:
    """One released weight (a manifest entry).

    Attributes:
        name: ``architecture.tag``.
        repo_id / revision: the Hub repository and the pinned commit (None: not pinned; see ``notes``).
        sha256: of ``model.safetensors``; checked after every download (None: cannot be checked, see ``notes``).
        embedded: folder inside the package holding the Hub files (loads offline, no download).
        source_format: ``"derf_zoo"`` (our keys) or a foreign layout the architecture's family declares a key
            map for (``"timm"`` for ViTs), mapped on load.
        recipe / dataset / split / metrics / produced_by / license: provenance for users and the model card.
        model_args: arguments the weights need (``global_pool``, ...), applied before the caller's.
        pretrained_cfg: data config overrides (mean, std, crop) of these weights.
        default: the weight ``pretrained=True`` picks for the bare architecture name.
    """

    name: str
    produced_by: str
    license: str
    dataset: str
    split: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    sha256: str | None = None
    embedded: str | None = None
    source_format: str = "derf_zoo"
    recipe: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    default: bool = False
    notes: str | None = None

    @property
    def architecture(self) -> str:
        return self.name.partition(".")[0]

    @property
    def tag(self) -> str:
        return self.name.partition(".")[2]

    def embedded_path(self) -> Path | None:
        if self.embedded is None:
            return None
        return Path(str(resources.files("derf_zoo").joinpath(self.embedded)))


def _parse(entries: Any, source: str) -> list[ReleasedWeights]:
    if not isinstance(entries, list):
        raise ValueError(f"{source}: 'weights' must be a list of entries.")
    out, seen = [], set()
    known = set(ReleasedWeights.__dataclass_fields__)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{source}: entry {i} is not a mapping.")
        missing = [k for k in _REQUIRED if not entry.get(k)]
        unknown = sorted(set(entry) - known)
        if missing or unknown:
            raise ValueError(f"{source}: entry {entry.get('name', i)!r} has missing fields {missing} / unknown fields "
                             f"{unknown}; valid fields: {sorted(known)}.")  # fmt: skip
        weights = ReleasedWeights(**entry)
        if "." not in weights.name:
            raise ValueError(f"{source}: weight names are 'architecture.tag', got {weights.name!r}.")
        if weights.embedded is None and weights.repo_id is None:
            raise ValueError(f"{source}: {weights.name} has neither an embedded folder nor a repo_id.")
        if weights.name in seen:
            raise ValueError(f"{source}: {weights.name} is listed twice.")
        seen.add(weights.name)
        out.append(weights)
    return out


def load_manifest(path: str | Path | None = None) -> list[ReleasedWeights]:
    """Read and validate a manifest (default: the packaged one)."""
    if path is None:
        text = resources.files("derf_zoo").joinpath(MANIFEST).read_text()
        source = MANIFEST
    else:
        text, source = Path(path).read_text(), str(path)
    data = yaml.safe_load(text) or {}
    entries = data.get("weights")
    return _parse([] if entries is None else entries, source)  # "weights:" with no entry yet: an empty manifest


@cache
def released_weights() -> tuple[ReleasedWeights, ...]:
    """Every released weight listed in the packaged manifest."""
    return tuple(load_manifest())


def resolve_weights(architecture: str, tag: str | None, manifest: tuple[ReleasedWeights, ...] | None = None,
                    recipe: str | None = None, conversion: str | None = None) -> ReleasedWeights:  # fmt: skip
    """The manifest entry ``pretrained=True`` loads for ``architecture[.tag]``.

    Args:
        architecture / tag: what was asked for.
        manifest: the entries to search (default: the packaged manifest).
        recipe: the recipe that trains the architecture, named in the error when nothing is released.
        conversion: the recipe that converts pretrained LayerNorm weights into it, named in the same error.

    Raises:
        NoPretrainedWeightsError: nothing is released for it; the message names the recipe that trains it
            (or the tags that do exist).
    """
    entries = [w for w in (manifest or released_weights()) if w.architecture == architecture]
    if tag is not None:
        match = [w for w in entries if w.tag == tag]
        if match:
            return match[0]
    elif entries:
        return next((w for w in entries if w.default), entries[0])
    name = f"{architecture}.{tag}" if tag else architecture
    if entries:
        tags = ", ".join(sorted(w.name for w in entries))
        raise NoPretrainedWeightsError(f"No released weights named {name!r}; released for {architecture}: {tags}.")
    how = (f"train them with `derf-zoo fit -c {recipe}`" if recipe
           else "train them with a recipe of its family (recipes/) and export them with `derf-zoo export`")  # fmt: skip
    if conversion:
        how += (f", or make a Derf model of this size from LayerNorm weights you already have with `derf-zoo fit -c "
                f"{conversion}` (a fitted conversion, then a short distillation)")
    raise NoPretrainedWeightsError(f"No released weights for {name!r}; {how}. pretrained=True never returns random "
                                   "weights.")  # fmt: skip
