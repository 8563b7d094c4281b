"""What a demo part returns, and the summary table with its verdicts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from derf_zoo.release import verdict as compare_verdict

__all__ = ["DEFAULT_NORMS", "PartResult", "choose_norms", "final_site_saturation", "print_summary", "saturation_text",
           "verdict"]

#: What every part compares unless asked for more: Derf against LayerNorm.
DEFAULT_NORMS = ("derf", "ln")


@dataclass
class PartResult:
    """One family's demo outcome: Derf against the family's default norm on the part's headline metric.

    Attributes:
        family: ``"ViT"``, ...
        data: what it ran on (``"1,797 real handwritten digits"``).
        metric: the headline metric (``"val top-1 (%)"``).
        higher_is_better: the metric's direction.
        derf / baseline_value: the metric for Derf and for the family's default norm (:attr:`baseline`).
        noise: two standard errors of the difference (evaluation noise); a gap beyond it is called real.
        pictures: plots the part wrote.
        baseline: the family's default norm that Derf replaces.
        own_verdict: the part's verdict when comparing the two numbers would mislead (both models at chance).
    """

    family: str
    data: str
    metric: str
    higher_is_better: bool
    derf: float
    baseline_value: float
    noise: float
    pictures: list[Path] = field(default_factory=list)
    baseline: str = "LayerNorm"  # the family's default norm that Derf replaces (Caduceus: "RMSNorm")
    own_verdict: str | None = None


def final_site_saturation(task: Any, loader: Iterable) -> tuple[str, float] | None:
    """``(site, saturated fraction)`` (``|alpha * x + shift| > 2``) of the last point-wise norm site the stream passes
    (the final site of a pre-norm model), on the first batch of ``loader``, in evaluation mode; None for a model
    without point-wise norms.

    A site near 1 passes almost no gradient: the trap that kept the nano DNA models at chance (issue 18).
    """
    from derf_zoo.norms.sites import saturation_by_site

    batch = _to(next(iter(loader)), task.device)
    args, kwargs = task.model_inputs(batch)
    was_training = task.model.training
    task.model.eval()
    try:
        by_site = saturation_by_site(task.model, lambda net: net(*args, **kwargs))
    finally:
        task.model.train(was_training)
    return list(by_site.items())[-1] if by_site else None


def saturation_text(value: tuple[str, float] | None) -> str:
    """A table cell for :func:`final_site_saturation`: ``"3.1% (final)"``, or '-' without point-wise norms."""
    return "-" if value is None else f"{100 * value[1]:.1f}% ({value[0]})"


def _to(batch: Any, device: Any) -> Any:
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def choose_norms(family: str, norms: list[str] | None, available: dict[str, str]) -> list[str]:
    """The norms a part runs: ``norms`` or the default, each one the part has a recipe for, Derf and LayerNorm
    among them (the summary compares those two).

    Raises:
        ValueError: a norm without a recipe (the message lists the part's norms), or Derf or LayerNorm missing.
    """
    norms = list(norms or DEFAULT_NORMS)
    unknown = [n for n in norms if n not in available]
    if unknown:
        raise ValueError(f"The {family} demo part has no recipe for norm(s) {unknown}; valid: {', '.join(available)}.")
    if not {"derf", "ln"} <= set(norms):
        raise ValueError(f"The demo compares Derf with LayerNorm: include both in --norms (got {norms}).")
    return norms


def verdict(r: PartResult) -> str:
    """A plain sentence: who wins and whether the gap exceeds the noise (or the part's own verdict)."""
    return r.own_verdict or compare_verdict(r.derf, r.baseline_value, r.noise, r.higher_is_better, r.baseline)


def print_summary(results: list[PartResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="derf_zoo demo: Derf against each family's default norm, one row per family")
    for column in ("family", "data", "metric", "Derf", "default norm", "noise (2 SE)", "verdict"):
        table.add_column(column, justify="left" if column in ("family", "data", "metric", "verdict") else "right")
    for r in results:
        table.add_row(r.family, r.data, r.metric, f"{r.derf:.2f}", f"{r.baseline_value:.2f} ({r.baseline})",
                      f"±{r.noise:.2f}", verdict(r))  # fmt: skip
    console = Console(width=max(Console().width, 120))
    console.print()
    console.print(table)
    pictures = [p for r in results for p in r.pictures]
    if pictures:
        console.print("Pictures: " + ", ".join(str(p) for p in pictures))
