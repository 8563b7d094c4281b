"""Benchmarking: one timing harness for ``derf-zoo bench`` and every script in ``benchmarks/``, and the benchmarks'
shared parts (activation memory, the norm, ViT and DiT step benchmarks, the common flags).

- :mod:`~derf_zoo.benchmarking.timing`: cases timed round by round in one process (fixed, alternating or rotating
  order), after warm-up calls, wall and process CPU time; paired per-round ratios and their spread.
- :mod:`~derf_zoo.benchmarking.memory`: bytes autograd keeps for the backward.
- :mod:`~derf_zoo.benchmarking.arguments`: the flags ``derf-zoo bench`` and the benchmark scripts share.
- :mod:`~derf_zoo.benchmarking.norms`, :mod:`~derf_zoo.benchmarking.vit_step`, :mod:`~derf_zoo.benchmarking.dit_step`:
  the measurements behind ``derf-zoo bench`` and ``benchmarks/{norms,vit_step,dit_step}.py``.
"""

from derf_zoo.benchmarking.memory import kept_activation_bytes, param_ptrs
from derf_zoo.benchmarking.timing import (
    ORDERS,
    PairedRatio,
    Timings,
    interleaved_times,
    quantile,
    run_interleaved,
    sync,
    time_rounds,
)

__all__ = ["ORDERS", "PairedRatio", "Timings", "interleaved_times", "kept_activation_bytes", "param_ptrs",
           "quantile", "run_interleaved", "sync", "time_rounds"]
