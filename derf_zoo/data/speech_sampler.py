"""Length-bucketed batches under a total-samples budget, sharded across ranks: fairseq's ``max_tokens`` batching.

fairseq (``RawAudioDataset.ordered_indices`` + ``data_utils.batch_by_size`` + ``EpochBatchIterator``) sorts the
utterances by length (ties broken by a per-epoch permutation), packs consecutive ones greedily while
``len(batch) * longest <= max_tokens`` (the cost counts padding), shuffles the batches per epoch and deals them
out to the ranks. This module does the same with its own code, and makes the batch count a multiple of the
world size by halving the largest batches, so no rank waits for another at the end of an epoch and every
utterance appears exactly once per epoch. The exception: when every batch already holds a single utterance and
their number is still not a multiple of the world size (fewer utterances than ranks, say), batches are repeated
from the start of the epoch's list (as ``DistributedSampler`` pads), so some utterances appear twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import BatchSampler, DistributedSampler, Sampler

from derf_zoo._validate import check_int

__all__ = ["EpochCounter", "LengthBucketBatchSampler", "batch_by_length"]


def batch_by_length(sizes: Sequence[int], order: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Pack ``order`` greedily into batches whose ``len(batch) * max(sizes in batch)`` stays <= ``max_tokens``.

    Raises:
        ValueError: one utterance alone is longer than ``max_tokens`` (it fits in no batch).
    """
    batches, batch, longest = [], [], 0
    for i in order:
        size = int(sizes[i])
        if size > max_tokens:
            raise ValueError(
                f"utterance {i} has {size} samples (after cropping), more than max_tokens={max_tokens}: it fits in "
                "no batch. Raise max_tokens or lower max_sample_size."
            )
        if batch and (len(batch) + 1) * max(longest, size) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(int(i))
        longest = max(longest, size)
    if batch:
        batches.append(batch)
    return batches


def _split_to_multiple(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Halve the largest batches until their count is a multiple of ``multiple`` (halves keep the budget)."""
    batches = list(batches)
    while len(batches) % multiple:
        largest = max(range(len(batches)), key=lambda b: len(batches[b]))
        if len(batches[largest]) < 2:
            # fewer utterances than the ranks need batches: repeat batches from the start, as DistributedSampler does
            need = multiple - len(batches) % multiple
            return batches + [batches[k % len(batches)] for k in range(need)]
        batch = batches.pop(largest)
        half = len(batch) // 2
        batches[largest:largest] = [batch[:half], batch[half:]]
    return batches


class EpochCounter(Sampler[int]):
    """The indices in order, and the epoch: Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, not on the
    batch sampler, so the batch sampler keeps its epoch here (or in the ``DistributedSampler`` Lightning injects)."""

    def __init__(self, num_samples: int) -> None:
        self.num_samples, self.epoch = num_samples, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.num_samples))

    def __len__(self) -> int:
        return self.num_samples


class LengthBucketBatchSampler(BatchSampler):
    """Batches of dataset indices under a total-samples budget, the same per epoch and seed on every rank.

    Lightning rebuilds a ``BatchSampler`` subclass with a ``DistributedSampler`` as ``sampler`` when it runs
    distributed (``use_distributed_sampler``, the default); this class then reads ``num_replicas`` and ``rank``
    from that sampler and ignores its order. Without Lightning, give ``num_replicas``/``rank``, or let them come
    from ``torch.distributed`` when it is initialised.

    Args:
        sampler: holds the epoch (``set_epoch``); a ``DistributedSampler`` also gives ``num_replicas``/``rank``.
            Its order is ignored. None: an ``EpochCounter``.
        sizes: the length of every utterance in samples (already capped at the crop size).
        max_tokens: the budget: ``len(batch) * longest in batch`` samples at most.
        shuffle: a new order every epoch (seeded by ``seed + epoch``); False keeps the sorted order.
        seed: the shuffling seed, shared by all ranks.
        num_replicas / rank: the sharding; None reads them as described above.
    """

    def __init__(
        self,
        sampler: Sampler | None = None,
        sizes: Sequence[int] = (),
        max_tokens: int = 1_400_000,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        # BatchSampler.__init__ is not called: it insists on a fixed batch_size, which a budget does not have.
        if isinstance(sampler, DistributedSampler):
            num_replicas = sampler.num_replicas if num_replicas is None else num_replicas
            rank = sampler.rank if rank is None else rank
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}) for num_replicas={num_replicas}, got {rank}.")
        check_int("max_tokens", max_tokens, 1, why="samples in one batch")
        if len(sizes) == 0:
            raise ValueError("LengthBucketBatchSampler needs at least one utterance (sizes is empty).")
        if not callable(getattr(sampler, "set_epoch", None)):
            sampler = EpochCounter(len(sizes))
        self.sampler, self.sizes = sampler, np.asarray(sizes, dtype=np.int64)
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self._cached: tuple[int, list[list[int]]] | None = None  # (epoch, batches): __len__ and __iter__ share it
        self.drop_last = False  # read by Lightning; no utterance is ever dropped

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (Lightning reaches the same through ``self.sampler.set_epoch``)."""
        self.sampler.set_epoch(epoch)

    def all_batches(self) -> list[list[int]]:
        """This epoch's batches of every rank, in order; rank ``r`` takes ``[r::num_replicas]``."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        tiebreak = rng.permutation(len(self.sizes)) if self.shuffle else np.arange(len(self.sizes))
        order = np.lexsort((tiebreak, self.sizes))[::-1]  # longest first, as fairseq
        batches = _split_to_multiple(batch_by_length(self.sizes, order, self.max_tokens), self.num_replicas)
        if self.shuffle:
            batches = [batches[b] for b in rng.permutation(len(batches))]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return len(self.all_batches()) // self.num_replicas
