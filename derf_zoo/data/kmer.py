"""A k-mer composition baseline for labelled DNA windows: what a model must beat to show it learned more than counts.

Each window becomes the frequencies of its overlapping k-mers over A, C, G, T (k-mers with another letter are
skipped), standardised with the training set's mean and std; an L2-regularised multinomial logistic regression is
fitted by L-BFGS on the training windows and scored on the test windows. Deterministic (full batch, zero init).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from derf_zoo._validate import check_int

__all__ = ["kmer_baseline", "kmer_frequencies"]

_BASE_INDEX = {b: i for i, b in enumerate("ACGT")}


def kmer_frequencies(sequences: Sequence[str], k: int = 3) -> np.ndarray:
    """``(len(sequences), 4**k)`` frequencies of the overlapping k-mers (lexicographic over ACGT) of each sequence."""
    check_int("k", k, 1, 8)
    out = np.zeros((len(sequences), 4**k), dtype=np.float64)
    powers = 4 ** np.arange(k - 1, -1, -1)
    for row, seq in enumerate(sequences):
        codes = np.array([_BASE_INDEX.get(b, -1) for b in seq.upper()], dtype=np.int64)
        if len(codes) < k:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, k)
        windows = windows[(windows >= 0).all(axis=1)]
        if len(windows):
            np.add.at(out[row], windows @ powers, 1.0)
            out[row] /= len(windows)
    return out


def kmer_baseline(train: Sequence[tuple[str, int]], test: Sequence[tuple[str, int]], k: int = 3,
                  l2: float = 1e-3) -> float:  # fmt: skip
    """Test accuracy (fraction) of a logistic regression on k-mer frequencies fitted on ``train``.

    Args:
        train / test: ``(sequence, label)`` pairs (labels 0 .. C-1).
        k: k-mer length (3: 64 features).
        l2: weight of the L2 penalty on the weights (mean loss + ``l2 * |W|^2``).
    """
    if not train or not test:
        raise ValueError(f"kmer_baseline needs training and test windows, got {len(train)} and {len(test)}.")
    x_train = kmer_frequencies([s for s, _ in train], k)
    x_test = kmer_frequencies([s for s, _ in test], k)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    xs = torch.tensor((x_train - mean) / std, dtype=torch.float64)
    xt = torch.tensor((x_test - mean) / std, dtype=torch.float64)
    y = torch.tensor([label for _, label in train])
    classes = int(max(y.max().item(), max(label for _, label in test))) + 1
    weight = torch.zeros(xs.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (xt @ weight + bias).argmax(1)
    return float((predicted == torch.tensor([label for _, label in test])).double().mean())


def _all_kmers(k: int) -> list[str]:
    """The k-mers in the order of :func:`kmer_frequencies`' columns (for inspection)."""
    return ["".join(p) for p in itertools.product("ACGT", repeat=k)]
