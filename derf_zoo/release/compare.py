"""Two models on the same held-out items: the noise of their difference, and one wording for who wins.

Every comparison the demo and the release cards print goes through here: a paired standard error when both models
score the same items (losses per image, per window, per clip), a binomial one when only accuracies and counts are
known, and one rule for the verdict: a gap is called real only beyond two standard errors of the difference.
"""

from __future__ import annotations

import math

import torch

__all__ = ["binomial_noise", "paired_noise", "verdict", "verdict_sentence"]


def paired_noise(a: torch.Tensor, b: torch.Tensor, block: int = 1) -> float:
    """Two standard errors of the mean of the paired differences ``a - b`` (two models scored on the same items).

    Args:
        a / b: one value per item, in the same order.
        block: average the differences over contiguous blocks of this many items first, and take the standard
            error over blocks (neighbouring text windows share a scene and a speaker: treating each as an
            independent draw would understate the noise). A tail shorter than a block is left out.

    Returns:
        The noise, or infinity with fewer than two items (blocks): no estimate. It covers which items were held
        out, not the training seed.
    """
    diff = a - b
    if block > 1:
        diff = diff[: len(diff) // block * block].reshape(-1, block).mean(1)
    if len(diff) < 2:
        return float("inf")
    return float(2 * diff.std(unbiased=True) / math.sqrt(len(diff)))


def binomial_noise(*scored: tuple[float, int]) -> float:
    """Two binomial standard errors of the difference of independent accuracies, each ``(fraction, items)``."""
    return 2 * math.sqrt(sum(acc * (1 - acc) / n for acc, n in scored))


def verdict(derf: float, baseline: float, noise: float, higher_is_better: bool, baseline_name: str = "LayerNorm"
            ) -> str:  # fmt: skip
    """A table cell: who is ahead and whether the gap exceeds ``noise`` (``"Derf better, beyond the noise"``,
    ``"LayerNorm ahead, within the noise: not separated"``, ``"tie"``)."""
    gap = derf - baseline if higher_is_better else baseline - derf
    if gap == 0:
        return "tie"
    winner = "Derf" if gap > 0 else baseline_name
    if abs(gap) > noise:
        return f"{winner} better, beyond the noise"
    return f"{winner} ahead, within the noise: not separated"


def verdict_sentence(first: tuple[str, float], second: tuple[str, float], noise: float, *, where: str, metric: str,
                     prefix: str = "", metric_in_gap: bool = True) -> str:  # fmt: skip
    """The sentence form of :func:`verdict` for two accuracies: who wins, by how many points, against the noise.

    Args:
        first / second: ``(name, accuracy as a fraction)``; either may be ahead.
        noise: two standard errors of the difference (a fraction, e.g. :func:`binomial_noise`).
        where: what the accuracies were measured on (``"359 images"``).
        metric: the metric's name (``"val top-1"``), named in a tie and, with ``metric_in_gap``, after the values.
        prefix: put before the sentence (``"HyenaDNA: "``).
        metric_in_gap: name the metric after the two values of a gap, too.

    Example:
        ``"Derf wins at this scale (99.2% vs LayerNorm 98.6%), a gap of 0.6 points; that is within the evaluation
        noise (2 standard errors = 1.5 points on 359 images), so this run does not separate them."``
    """
    (best, best_acc), (other, other_acc) = sorted((first, second), key=lambda s: s[1], reverse=True)
    if best_acc == other_acc:
        return (f"{prefix}{first[0]} and {second[0]} tie at {100 * best_acc:.1f}% {metric} (noise ±{100 * noise:.1f} "
                f"points on {where}).")  # fmt: skip
    gap = best_acc - other_acc
    text = (f"{prefix}{best} wins at this scale ({100 * best_acc:.1f}% vs {other} {100 * other_acc:.1f}%"
            f"{' ' + metric if metric_in_gap else ''}), a gap of {100 * gap:.1f} points; ")  # fmt: skip
    if gap > noise:
        return text + f"that exceeds twice the evaluation noise ({100 * noise:.1f} points on {where})."
    return text + (f"that is within the evaluation noise (2 standard errors = {100 * noise:.1f} points on {where}), "
                   "so this run does not separate them.")  # fmt: skip
