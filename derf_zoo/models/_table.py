"""The model table, generated from the registry and the manifest, never written by hand.

One row per entry point (family, parameters, default input, the recipe that trains it) and, for each released
weight of it, the tag, the metrics its model card states, the sha256 prefix the manifest pins and a link to the
card. ``derf-zoo models`` prints it; the docs show it in generated regions of Markdown files, which sit between

    <!-- derf-zoo models --markdown --family vit --cards ../cards -->
    ...
    <!-- /derf-zoo models -->

(the arguments in the opening marker are ``derf-zoo models``'s filters: a pattern, ``--family``, ``--pretrained``,
``--cards``). :func:`fill_generated` fills such regions (the docs build does, so the site never drifts from the
code) and :func:`update_files` refreshes or checks files (the tests check the committed pages).
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.overrides import TorchFunctionMode

__all__ = ["BEGIN", "END", "ModelRow", "WeightRow", "fill_generated", "markdown_tables", "model_rows", "text_table",
           "update_files"]

BEGIN = "<!-- derf-zoo models"
END = "<!-- /derf-zoo models -->"
_REGION = re.compile(r"(<!-- derf-zoo models(?P<args>[^>]*?)-->\n)(?P<body>.*?)(<!-- /derf-zoo models -->)", re.S)
_NONE = "—"


@dataclass(frozen=True)
class WeightRow:
    """A released weight of an entry point, as its manifest entry and its model card state it.

    Attributes:
        name: ``architecture.tag``.
        metrics: the metrics the card's ``model-index`` states (the manifest's for weights whose card is on the
            Hub only), in the card's order.
        sha256: the sha256 the manifest pins (None: not pinned).
        embedded: the weights ship inside the package (their card is a local file); else they are on the Hub.
        repo_id: the Hub repository, where there is one.
    """

    name: str
    metrics: tuple[tuple[str, float], ...]
    sha256: str | None
    embedded: bool
    repo_id: str | None

    @property
    def tag(self) -> str:
        return self.name.partition(".")[2]


@dataclass(frozen=True)
class ModelRow:
    """An entry point of the registry.

    Attributes:
        name: the entry point (``vit_base_derf``).
        family: its family's name.
        params: number of parameters with the entry point's defaults.
        default_input: what one example looks like with the defaults (``3x224x224``, ``16000 samples @ 16 kHz``).
        recipe: the recipe that trains it: the registry's, else the one its released weights name (None: neither).
        weights: its released weights.
    """

    name: str
    family: str
    params: int
    default_input: str
    recipe: str | None
    weights: tuple[WeightRow, ...]


def model_rows(pattern: str = "*", *, family: str | None = None, pretrained: bool = False) -> list[ModelRow]:
    """The table's rows, by family then name.

    Args:
        pattern: glob over entry-point names (``"vit_*"``).
        family: only this family (an unknown name is an error that lists the families).
        pretrained: only entry points with released weights.

    Example:
        >>> [row.params for row in model_rows("vit_nano_derf")]
        [202972]
    """
    from derf_zoo.models import get_family, get_model_entry, list_models

    if family is not None:
        get_family(family)  # raises with the valid choices
    rows = []
    for name in list_models(pattern):
        entry = get_model_entry(name)
        if family is not None and entry.family.name != family:
            continue
        weights = tuple(_weight_row(w) for w in _released() if w.architecture == name)
        if pretrained and not weights:
            continue
        params, default_input = _describe(name)
        # the registry's recipe, else the one its released weights were trained with (the manifest's)
        recipe = entry.recipe or next((w.recipe for w in _released() if w.architecture == name and w.recipe), None)
        rows.append(ModelRow(name, entry.family.name, params, default_input, recipe, weights))
    return sorted(rows, key=lambda r: (r.family, r.name))


def markdown_tables(rows: Sequence[ModelRow], *, cards: str | None = None) -> str:
    """Markdown: one table per family (a heading per family when there are several).

    Args:
        rows: from :func:`model_rows`.
        cards: where the docs site keeps the card pages (``cards``, ``../cards``): an embedded weight links to
            ``<cards>/<name>.md``. None links to the card inside the package (``derf_zoo/checkpoints/<name>/
            README.md``, a path from the repository's root). Weights on the Hub link to their repository.
    """
    families = sorted({r.family for r in rows})
    out = []
    for fam in families:
        if len(families) > 1:
            out += [f"## {fam}", ""]
        out += ["| model | params | default input | recipe (in `recipes/`) | released weights | card metrics "
                "| sha256 |",
                "|---|---:|---|---|---|---|---|"]  # fmt: skip
        for row in (r for r in rows if r.family == fam):
            recipe = f"`{row.recipe.removeprefix('recipes/')}`" if row.recipe else _NONE
            first = f"`{row.name}` | {_params(row.params)} | {row.default_input} | {recipe}"
            if not row.weights:
                out.append(f"| {first} | {_NONE} | | |")
            for i, w in enumerate(row.weights):
                lead = first if i == 0 else "| | |"
                out.append(f"| {lead} | [`.{w.tag}`]({_card_link(w, cards)}) | {_metrics(w)} | {_sha(w)} |")
        out.append("")
    if not rows:
        out = ["_No entry points match._", ""]
    return "\n".join(out)


def text_table(rows: Sequence[ModelRow]) -> str:
    """Plain aligned columns for the terminal."""
    table = [("model", "family", "params", "default input", "recipe", "weights")]
    for row in rows:
        tags = ", ".join(f".{w.tag}" for w in row.weights) or "-"
        table.append((row.name, row.family, _params(row.params), row.default_input, row.recipe or "-", tags))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)


def fill_generated(text: str, *, source: str = "<text>") -> str:
    """``text`` with every generated region (see the module's docstring) filled from the registry and manifest.

    Raises:
        ValueError: a marker without its end, or arguments this command does not take.
    """
    if text.count(BEGIN) != text.count(END):
        raise ValueError(f"{source}: every '{BEGIN} ... -->' needs a closing '{END}'.")

    def render(match: re.Match) -> str:
        try:
            args, extra = _region_parser().parse_known_args(shlex.split(match["args"]))
        except argparse.ArgumentError:
            args, extra = None, True
        if extra or args is None or not args.markdown:
            raise ValueError(f"{source}: a generated region takes '--markdown' and filters only (a pattern, "
                             f"--family, --pretrained, --cards), got {match['args'].strip()!r}.")  # fmt: skip
        body = markdown_tables(model_rows(args.pattern, family=args.family, pretrained=args.pretrained),
                               cards=args.cards)  # fmt: skip
        return f"{match[1]}{body}{match[4]}"

    return _REGION.sub(render, text)


def update_files(paths: Iterable[Path], *, check: bool = False) -> list[Path]:
    """Refresh the generated regions of ``paths`` in place (``check=True``: only report); returns the stale files.

    Files without a generated region are left alone (a shell glob such as ``docs/families/*.md`` may match some).
    """
    stale = []
    for path in paths:
        text = Path(path).read_text()
        new = fill_generated(text, source=str(path))
        if new != text:
            stale.append(Path(path))
            if not check:
                Path(path).write_text(new)
    return stale


def _region_parser() -> argparse.ArgumentParser:
    """The filters a generated region's marker may hold (``derf-zoo models``'s, less what writes files)."""
    parser = argparse.ArgumentParser(prog="<!-- derf-zoo models", add_help=False, exit_on_error=False)
    parser.add_argument("pattern", nargs="?", default="*")
    parser.add_argument("--family", default=None)
    parser.add_argument("--pretrained", action="store_true")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--cards", default=None)
    return parser


# ---- how each column is computed ---------------------------------------------------------------------------


def _released() -> tuple[Any, ...]:
    from derf_zoo.hub import released_weights

    return released_weights()


@cache
def _describe(name: str) -> tuple[int, str]:
    """(parameters, default input) of an entry point with its defaults, built without allocating its weights."""
    from derf_zoo.models import create_model

    with torch.random.fork_rng(devices=[]):  # describing a model leaves the caller's random stream alone
        try:
            with _EmptyOnMeta():  # parameters are made with torch.empty: a ViT-L or DiT-XL costs no memory or time
                model = create_model(name)
        except (NotImplementedError, RuntimeError):  # a family whose init reads tensor values: build it for real
            model = create_model(name)
    params = sum(p.numel() for p in model.parameters())
    return params, _default_input(model)


class _EmptyOnMeta(TorchFunctionMode):
    """Parameters made inside are meta tensors (``torch.empty`` is how ``nn.Linear`` & co. allocate them)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _default_input(model: Any) -> str:
    """One example of the model's default input, from its data config (``pretrained_cfg``)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = tuple(cfg.get("input_size") or ())
    if "sample_rate" in cfg and len(size) == 1:
        return f"{size[0]} samples @ {cfg['sample_rate'] / 1000:g} kHz"
    if len(size) == 3:
        kind = {"latent": " latent", "pixel": " pixels"}.get(cfg.get("space"), "")
        return "x".join(str(s) for s in size) + kind
    length = getattr(model, "max_seq_len", None) or (size[0] if len(size) == 1 else None)
    if length:
        return f"≤ {length} tokens"
    return _NONE


def _weight_row(weights: Any) -> WeightRow:
    metrics = tuple(weights.metrics.items())
    folder = weights.embedded_path()
    if folder is not None:
        metrics = _card_metrics(folder / "README.md") or metrics
    return WeightRow(weights.name, metrics, weights.sha256, folder is not None, weights.repo_id)


def _card_metrics(card: Path) -> tuple[tuple[str, float], ...]:
    """The metrics a card's ``model-index`` states (its YAML front matter)."""
    text = card.read_text()
    if not text.startswith("---"):
        return ()
    meta = yaml.safe_load(text.split("---", 2)[1]) or {}
    out = []
    for index in meta.get("model-index", []):
        for result in index.get("results", []):
            out += [(m["type"], float(m["value"])) for m in result.get("metrics", [])]
    return tuple(out)


def _card_link(w: WeightRow, cards: str | None) -> str:
    if not w.embedded:
        return f"https://huggingface.co/{w.repo_id}"
    if cards is None:
        return f"derf_zoo/checkpoints/{w.name}/README.md"
    return f"{cards.rstrip('/')}/{w.name}.md"


def _params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e6:.3f} M"


def _metrics(w: WeightRow) -> str:
    if not w.metrics:
        return "on the source card" if not w.embedded else _NONE
    return ", ".join(f"{k} {v:.4g}" for k, v in w.metrics)


def _sha(w: WeightRow) -> str:
    return f"`{w.sha256[:12]}`" if w.sha256 else "not pinned"
