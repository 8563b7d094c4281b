"""What a demo part returns, and the summary table with its verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PartResult", "print_summary", "verdict"]


@dataclass
class PartResult:
    """One family's demo outcome: Derf against LayerNorm on the part's headline metric.

    Attributes:
        family: ``"ViT"``, ...
        data: what it ran on (``"1,797 real handwritten digits"``).
        metric: the headline metric (``"val top-1 (%)"``).
        higher_is_better: the metric's direction.
        derf / layernorm: the metric for each norm.
        noise: two standard errors of the difference (evaluation noise); a gap beyond it is called real.
        pictures: plots the part wrote.
    """

    family: str
    data: str
    metric: str
    higher_is_better: bool
    derf: float
    layernorm: float
    noise: float
    pictures: list[Path] = field(default_factory=list)


def verdict(r: PartResult) -> str:
    """A plain sentence: who wins and whether the gap exceeds the noise."""
    gap = r.derf - r.layernorm if r.higher_is_better else r.layernorm - r.derf
    if gap == 0:
        return "tie"
    winner = "Derf" if gap > 0 else "LayerNorm"
    if abs(gap) > r.noise:
        return f"{winner} better, beyond the noise"
    return f"{winner} ahead, within the noise: not separated"


def print_summary(results: list[PartResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="derf_zoo demo: Derf against LayerNorm, one row per family")
    for column in ("family", "data", "metric", "Derf", "LayerNorm", "noise (2 SE)", "verdict"):
        table.add_column(column, justify="left" if column in ("family", "data", "metric", "verdict") else "right")
    for r in results:
        table.add_row(r.family, r.data, r.metric, f"{r.derf:.2f}", f"{r.layernorm:.2f}", f"±{r.noise:.2f}",
                      verdict(r))  # fmt: skip
    console = Console(width=max(Console().width, 120))
    console.print()
    console.print(table)
    pictures = [p for r in results for p in r.pictures]
    if pictures:
        console.print("Pictures: " + ", ".join(str(p) for p in pictures))
