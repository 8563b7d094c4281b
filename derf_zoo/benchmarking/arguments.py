"""The flags ``derf-zoo bench`` and the benchmark scripts share, and argparse's check for counts."""

from __future__ import annotations

import argparse

import torch

__all__ = ["add_arguments", "positive_int"]


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts: an int >= 1, else argparse's usage error naming the option and value."""
    try:
        value = int(text)
    except ValueError:
        value = 0  # not an int ("2.5", "abc"): the same message
    if value < 1:
        # 0 repeats or batch 0 used to end in StatisticsError / ZeroDivisionError after the set-up.
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser, *, repeats: int, batch: int) -> None:
    """``--device --dtype --threads --repeats --batch --compile`` with these defaults for ``repeats`` and ``batch``."""
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="norm benchmark")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (the issue targets are for 2)")
    p.add_argument("--repeats", type=positive_int, default=repeats, help="timed rounds; the median is reported")
    p.add_argument("--batch", type=positive_int, default=batch, help="ViT step batch")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the eager Derf (slow to build)")
