"""wav2vec 2.0's span masking and negative sampling, with fairseq's semantics and torch generators.

:func:`compute_mask_indices` follows fairseq's ``data_utils.compute_mask_indices`` (static span lengths):
per row, ``int(p * length / span + u)`` spans (``u ~ U[0, 1)``, i.e. probabilistic rounding), at least
``min_masks``, starts drawn without replacement from ``range(length - span)``, overlaps allowed, only within the
row's unpadded frames; then (``require_same_masks``) every row is subsampled down to the smallest masked count
of the batch, so each row has the same number of masked frames. One very short row therefore thins (or empties)
the mask of the whole batch: pretraining passes ``min_masked=2`` (what the negatives need), so such a batch raises a
:class:`TooFewMaskedFramesError` naming the short row instead of silently training on nothing.

:func:`sample_negative_indices` draws, for every masked frame, ``num_negatives`` frames uniformly from the same
row's *masked* frames other than itself (fairseq's ``sample_negatives`` with ``negatives_from_everywhere=False``
and transformers' ``_sample_negative_indices``), as flat indices into ``(B * T)`` (transformers' layout).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TooFewMaskedFramesError", "compute_mask_indices", "sample_negative_indices"]


class TooFewMaskedFramesError(ValueError):
    """A row of the batch gets fewer masked frames than the caller needs (see :func:`compute_mask_indices`).

    Attributes:
        row: index of the row with the fewest masked frames (the shortest row, as a rule).
        frames: its unpadded length in frames.
        masked: the masked frames it gets.
        minimum: the masked frames needed per row.
    """

    def __init__(self, row: int, frames: int, masked: int, minimum: int, detail: str = "") -> None:
        self.row, self.frames, self.masked, self.minimum = row, frames, masked, minimum
        super().__init__(f"Row {row} ({frames} frame(s)) gets {masked} masked frame(s){detail}; every row needs at "
                         f"least {minimum} (the negatives are drawn from the row's other masked frames). Drop the "
                         "shortest utterances (the data's min_sample_size) or raise mask_prob/min_masks.")  # fmt: skip


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def compute_mask_indices(
    shape: tuple[int, int],
    mask_prob: float,
    mask_length: int,
    lengths: Tensor | None = None,
    min_masks: int = 0,
    require_same_masks: bool = True,
    generator: torch.Generator | None = None,
    min_masked: int = 0,
) -> Tensor:
    """Bool mask ``(B, T)``, True at masked frames.

    Args:
        shape: ``(B, T)`` frames.
        mask_prob: spans per row are ``mask_prob * length / mask_length`` (0.65); with overlaps about half of
            the frames end up masked.
        mask_length: span length (10).
        lengths: unpadded frames per row (B,), None for all ``T``; padded frames are never masked.
        min_masks: fewest spans per row (2).
        require_same_masks: subsample every row to the batch's smallest masked count (fairseq's default).
        generator: a CPU ``torch.Generator`` for reproducible masks (validation); None uses the global RNG.
        min_masked: fewest masked frames every row must end up with (2 for pretraining, whose negatives need
            them); 0 accepts any mask, even an all-False one (fairseq).

    Returns:
        The ``(B, T)`` bool mask.

    Raises:
        TooFewMaskedFramesError: a row ends up with fewer than ``min_masked`` masked frames (with
            ``require_same_masks``, every row is cut to the batch's fewest, so one short row is enough); it
            names the row with the fewest and its length.
        ValueError: a bad ``mask_prob``, ``mask_length`` or ``lengths``.
    """
    bsz, all_sz = shape
    if not 0.0 <= mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in [0, 1), got {mask_prob}.")
    if mask_length < 1:
        raise ValueError(f"mask_length must be >= 1, got {mask_length}.")
    sizes = [all_sz] * bsz if lengths is None else [int(n) for n in lengths.tolist()]
    if lengths is not None and (len(sizes) != bsz or any(not 0 < s <= all_sz for s in sizes)):
        raise ValueError(f"lengths must hold {bsz} values in [1, {all_sz}], got {sizes}.")
    # fairseq draws the rounding once when there is no padding, and per row otherwise.
    shared_u = _rand(generator) if lengths is None else None
    rows = []
    for sz in sizes:
        u = shared_u if shared_u is not None else _rand(generator)
        num_mask = max(min_masks, int(mask_prob * sz / float(mask_length) + u))
        min_len = mask_length
        if sz - min_len <= num_mask:
            min_len = sz - num_mask - 1
        if num_mask == 0 or sz - min_len <= 0:
            rows.append(torch.zeros(0, dtype=torch.long))
            continue
        num_mask = min(num_mask, sz - min_len)
        starts = torch.randperm(sz - min_len, generator=generator)[:num_mask]
        idx = (starts[:, None] + torch.arange(mask_length)).flatten()
        rows.append(torch.unique(idx[idx < sz]))
    mask = torch.zeros(bsz, all_sz, dtype=torch.bool)
    fewest = min(len(r) for r in rows)
    if fewest < min_masked:
        # the row with the fewest masked frames, the shortest of those on a tie (it is the one to drop)
        row = min(range(bsz), key=lambda i: (len(rows[i]), sizes[i]))
        cut = " (every row is cut to this count)" if require_same_masks and bsz > 1 else ""
        raise TooFewMaskedFramesError(row, sizes[row], len(rows[row]), min_masked, cut)
    for i, idx in enumerate(rows):
        if require_same_masks and len(idx) > fewest:
            idx = idx[torch.randperm(len(idx), generator=generator)[:fewest]]
        mask[i, idx] = True
    return mask


def sample_negative_indices(mask: Tensor, num_negatives: int, generator: torch.Generator | None = None) -> Tensor:
    """``(B, T, K)`` long: for each masked frame, K flat indices (into ``B * T``) of other masked frames of its row.

    Unmasked frames get the index of their row's first frame (never read by the loss). Each row needs at least
    two masked frames.
    """
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor of shape (B, T), got {mask.dtype} {tuple(mask.shape)}.")
    bsz, tsz = mask.shape
    out = torch.zeros(bsz, tsz, num_negatives, dtype=torch.long)
    cpu_mask = mask.cpu()
    counts = cpu_mask.sum(1)
    if bsz and int(counts.min()) < 2:
        short = (counts < 2).nonzero().squeeze(1).tolist()
        raise ValueError(f"Row(s) {short} have {counts[short].tolist()} masked frame(s); negatives need at least 2 "
                         "per row (raise mask_prob/min_masks or use longer audio).")  # fmt: skip
    for b in range(bsz):
        pos = cpu_mask[b].nonzero().squeeze(1)
        m = len(pos)
        draw = torch.randint(0, m - 1, (m, num_negatives), generator=generator)
        draw += (draw >= torch.arange(m)[:, None]).long()  # skip the positive, keep the draw uniform
        out[b] = b * tsz
        out[b, pos] = pos[draw] + b * tsz
    return out.to(mask.device)
