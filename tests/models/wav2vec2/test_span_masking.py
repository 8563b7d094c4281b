"""wav2vec 2.0's span masking and negative sampling against closed forms (fairseq's counts and spans) and
against the same draws without the batch-wide subsampling. Row counts, padding and determinism:
test_wav2vec2.py."""

import torch

from derf_zoo.models.wav2vec2.span_masking import compute_mask_indices, sample_negative_indices


def _runs(row: torch.Tensor) -> list[int]:
    """Lengths of the maximal runs of True in a 1-D bool tensor."""
    runs, current = [], 0
    for value in [*row.tolist(), False]:
        if value:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_single_frame_spans_mask_exactly_the_rounded_count():
    # With spans of one frame nothing overlaps, so each row masks int(p * T + u) frames, u ~ U[0, 1) drawn once
    # (no padding) first from the generator: fairseq's probabilistic rounding.
    for seed in range(5):
        u = float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
        mask = compute_mask_indices((4, 50), 0.37, 1, require_same_masks=False,
                                    generator=torch.Generator().manual_seed(seed))  # fmt: skip
        assert mask.sum(1).tolist() == [int(0.37 * 50 + u)] * 4


def test_spans_are_whole_and_lie_inside_the_row():
    # Starts are drawn from range(T - span), so no span is cut at the end: every masked run is at least a span.
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([120, 64, 33])
    mask = compute_mask_indices((3, 120), 0.5, 10, lengths=lengths, min_masks=1, require_same_masks=False,
                                generator=g)  # fmt: skip
    for row, n in zip(mask, lengths.tolist()):
        runs = _runs(row[:n])
        assert runs and all(r >= 10 for r in runs) and not row[n:].any()


def test_same_masks_subsample_each_row_to_the_batchs_fewest():
    # The rows are drawn first, in the same order, so without the subsampling the same seed gives the full masks.
    lengths = torch.tensor([100, 70, 40])
    free = compute_mask_indices((3, 100), 0.5, 8, lengths=lengths, require_same_masks=False,
                                generator=torch.Generator().manual_seed(4))  # fmt: skip
    same = compute_mask_indices((3, 100), 0.5, 8, lengths=lengths, generator=torch.Generator().manual_seed(4))
    fewest = int(free.sum(1).min())
    assert same.sum(1).tolist() == [fewest] * 3
    assert not (same & ~free).any()  # a subset of each row's own spans


def test_negatives_are_uniform_over_the_rows_other_masked_frames():
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, [1, 3, 4, 8]] = True
    neg = sample_negative_indices(mask, 6000, generator=torch.Generator().manual_seed(0))
    for t in (1, 3, 4, 8):
        others = [s for s in (1, 3, 4, 8) if s != t]
        counts = torch.bincount(neg[0, t], minlength=10)
        assert counts[others].sum() == 6000 and all(abs(int(counts[s]) - 2000) < 150 for s in others)
