"""The one timing harness of the benchmarks: cases timed round by round in one process, and paired ratios.

Every benchmark here compares a few implementations (ours against timm / diffusers / transformers, Derf against
LayerNorm) on a shared, loaded machine. What makes such numbers honest is the same everywhere, so it lives here:

- every case is called ``warmup`` times first (allocator, one-time kernels, lazy initialisation), untimed;
- then ``repeats`` rounds, each timing every case once, back to back (A B C, A B C, ...), in a fixed order, an
  order reversed every other round, or one rotated by one each round (so no case always runs first or last);
- each timing records wall time (``time.perf_counter``) and the process's CPU time (``time.process_time``: other
  processes inflate it far less than wall time); on CUDA the device is synchronised around each timing;
- a comparison of two cases is read from the per-round ratios (each round's two timings were taken moments apart,
  so machine drift cancels): :class:`PairedRatio` gives their median, spread and the ratios of medians and minimums.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from derf_zoo._validate import check_choice, check_int

__all__ = ["ORDERS", "PairedRatio", "Timings", "interleaved_times", "quantile", "run_interleaved", "sync",
           "time_rounds"]

#: the order of the cases within a round: as given; reversed every other round; rotated by one each round
ORDERS = ("fixed", "alternate", "rotate")


def sync(device: torch.device | str | None) -> None:
    """Wait for the CUDA device's queued work (a no-op elsewhere), so a timing covers the work, not its launch."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Milliseconds per call of every case in every round (``wall[name][round]``), wall and process CPU time."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]

    def medians(self) -> dict[str, float]:
        """Median wall milliseconds per case."""
        return {name: statistics.median(t) for name, t in self.wall.items()}

    def ratio(self, case: str, base: str, clock: str = "wall") -> PairedRatio:
        """The paired per-round ratio ``case / base`` on the ``"wall"`` or ``"cpu"`` clock."""
        times = self.wall if clock == "wall" else self.cpu
        return PairedRatio(times[case], times[base])


def _round_order(names: list[str], index: int, order: str) -> list[str]:
    if order == "alternate":
        return names if index % 2 == 0 else names[::-1]
    if order == "rotate":
        shift = index % len(names)
        return names[shift:] + names[:shift]
    return names


def time_rounds(cases: dict[str, Callable[[], object]], repeats: int, warmup: int, *,
                device: torch.device | str | None = None, inner: int = 1, order: str = "fixed",
                progress: bool = False) -> Timings:  # fmt: skip
    """Time every case once per round, ``repeats`` rounds, after ``warmup`` untimed calls of each.

    Args:
        cases: name -> a call to time (its result is ignored).
        repeats: rounds (>= 1).
        warmup: untimed calls of each case first, case after case (>= 0).
        device: where the cases run; CUDA is synchronised before and after each timing.
        inner: calls per timing (>= 1), the time divided by it: a case run a few times in a row reaches its
            steady state (the allocator's, for one) within the timing.
        order: the order of the cases within each round, one of :data:`ORDERS`.
        progress: print each finished round's times to stderr (runs that take minutes).

    Returns:
        :class:`Timings` in milliseconds per call.

    Raises:
        ValueError: ``repeats`` or ``inner`` < 1, ``warmup`` < 0 (a median of no timings does not exist), an
            unknown ``order``, or no case.
    """
    for key, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0), ("inner", inner, 1)):
        check_int(key, value, least, owner="time_rounds")
    check_choice("order", order, ORDERS)
    if not cases:
        raise ValueError("time_rounds: no case to time.")
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    sync(device)
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for index in range(repeats):
        for name in _round_order(names, index, order):
            fn = cases[name]
            sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(inner):
                fn()
            sync(device)
            wall[name].append((time.perf_counter() - start) * 1e3 / inner)
            cpu[name].append((time.process_time() - start_cpu) * 1e3 / inner)
        if progress:  # a full run can take minutes on a loaded machine
            print(f"round {index + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in wall.items()),
                  file=sys.stderr, flush=True)  # fmt: skip
    return Timings(wall=wall, cpu=cpu)


def interleaved_times(cases: dict[str, Callable[[], object]], repeats: int, warmup: int,
                      device: torch.device | str | None = None, inner: int = 1) -> dict[str, list[float]]:  # fmt: skip
    """Wall milliseconds per call of every case in every round, in a fixed order (see :func:`time_rounds`)."""
    return time_rounds(cases, repeats, warmup, device=device, inner=inner).wall


def run_interleaved(cases: dict[str, Callable[[], object]], repeats: int, warmup: int,
                    device: torch.device | str | None = None, inner: int = 1) -> dict[str, float]:  # fmt: skip
    """Median wall milliseconds per call of every case, measured round-robin (see :func:`time_rounds`)."""
    return time_rounds(cases, repeats, warmup, device=device, inner=inner).medians()


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated linearly between the two nearest order statistics (numpy's
    default method)."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class PairedRatio:
    """``a / b`` of two cases timed in the same rounds: the per-round ratios and their summaries.

    Args:
        a: times of the case, one per round.
        b: times of the baseline in the same rounds.

    Raises:
        ValueError: the two have different numbers of rounds, or none.
    """

    def __init__(self, a: Sequence[float], b: Sequence[float]) -> None:
        if len(a) != len(b) or not a:
            raise ValueError(f"PairedRatio: both cases need the same rounds, got {len(a)} and {len(b)} timings.")
        self.a, self.b = list(a), list(b)
        #: the ratio of each round's two timings
        self.per_round = [x / y for x, y in zip(self.a, self.b, strict=True)]

    @property
    def median(self) -> float:
        """Median of the per-round ratios."""
        return statistics.median(self.per_round)

    @property
    def min(self) -> float:
        """Smallest per-round ratio."""
        return min(self.per_round)

    @property
    def max(self) -> float:
        """Largest per-round ratio."""
        return max(self.per_round)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the per-round ratios (0.25 and 0.75: the middle half)."""
        return quantile(self.per_round, q)

    @property
    def of_medians(self) -> float:
        """The ratio of the two cases' median times."""
        return statistics.median(self.a) / statistics.median(self.b)

    @property
    def of_minimums(self) -> float:
        """The ratio of the fastest rounds (on a loaded machine the fastest round is the least disturbed one)."""
        return min(self.a) / min(self.b)

    def describe(self, what: str = "") -> str:
        """``per-round[ what] median 1.012x, middle half 1.003-1.020x, min-max 0.990-1.050x; ratio of medians
        1.010x; ratio of minimums 1.008x``: every summary, for a report line."""
        return (f"per-round{' ' + what if what else ''} median {self.median:.3f}x, middle half "
                f"{self.quantile(0.25):.3f}-{self.quantile(0.75):.3f}x, min-max {self.min:.3f}-{self.max:.3f}x; "
                f"ratio of medians {self.of_medians:.3f}x; ratio of minimums {self.of_minimums:.3f}x")
