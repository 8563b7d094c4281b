"""Caduceus-Ph 1k-token training step on CPU: our chunked selective scan against the sequential reference loop and
against mambapy's parallel scan, and Derf against RMSNorm for the whole step; interleaved rounds, paired ratios.

    python benchmarks/caduceus_step.py [--batch 2] [--length 1024] [--repeats 5] [--threads 1] [--out FILE.md]
    python benchmarks/caduceus_step.py --quick      # a tiny model, one round: what the test runs

A step is forward + masked-LM cross-entropy + backward of ``caduceus_ph_1k`` (d_model 118, 4 layers, 0.47M
parameters). Every case runs once per round, in turn, so load from other processes hits all of them alike; the
ratio of each round is taken against the same round's baseline, and the table gives the median ratio with its
min-max range over the rounds. Issue targets: chunked scan >= 5x faster than the loop, <= 1.5x mambapy's time,
Derf <= 1.05x RMSNorm.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from derf_zoo.models import create_model
from derf_zoo.models.caduceus import mamba as mamba_module
from derf_zoo.models.caduceus.selective_scan import DEFAULT_CHUNK_SIZE, linear_scan


def _mambapy_scan_bld(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, chunk_size=None):
    """The selective scan as mambapy's ``MambaBlock.selective_scan`` computes it (its ``pscan``), our layout."""
    from mambapy.pscan import pscan

    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(delta.unsqueeze(-1) * A)
    drive = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    y = (pscan(decay, drive) @ C.unsqueeze(-1)).squeeze(-1)
    if D is not None:
        y = y + u * D
    return y * F.silu(z) if z is not None else y


@contextlib.contextmanager
def _mambapy_scan() -> Iterator[None]:
    """Route every Mamba block's scan through mambapy's pscan (the rest of the step unchanged)."""
    original = mamba_module.selective_scan_bld
    mamba_module.selective_scan_bld = _mambapy_scan_bld
    try:
        yield
    finally:
        mamba_module.selective_scan_bld = original


def _step_fn(model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor, mambapy: bool) -> Callable[[], None]:
    def step() -> None:
        with _mambapy_scan() if mambapy else contextlib.nullcontext():
            logits = model(ids)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
            loss.backward()
        model.zero_grad(set_to_none=True)

    return step


def time_rounds(cases: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of every case in each of ``repeats`` interleaved rounds (after ``warmup`` untimed calls)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
        print(f"round {round_index + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items()),
              file=sys.stderr, flush=True)  # progress: a full run takes minutes on a loaded machine
    return times


def ratio_line(name: str, times: dict[str, list[float]], case: str, base: str, target: str) -> str:
    """A table row: the median of the per-round ratios case/base, its range, and the target."""
    ratios = [a / b for a, b in zip(times[case], times[base])]
    return (f"| {name} | {statistics.median(times[case]):.1f} | {statistics.median(times[base]):.1f} | "
            f"{statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} | {target} |")  # fmt: skip


def bench(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    size = {"d_model": 16, "n_layer": 1, "d_state": 4} if args.quick else {}
    ids = torch.randint(7, 11, (args.batch, args.length))
    labels = torch.where(torch.rand(ids.shape) < 0.15, ids, torch.full_like(ids, -100))  # 15 % masked positions

    def model(norm: str, scan: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model("caduceus_ph_1k", norm=norm, scan=scan, chunk_size=args.chunk_size, **size)

    rms, rms_loop, derf = model("rmsnorm", "chunked"), model("rmsnorm", "reference"), model("derf", "chunked")
    step_cases = {
        "chunked (rmsnorm)": _step_fn(rms, ids, labels, mambapy=False),
        "mambapy pscan (rmsnorm)": _step_fn(rms, ids, labels, mambapy=True),
        "derf": _step_fn(derf, ids, labels, mambapy=False),
    }
    loop_cases = {"chunked (rmsnorm)": step_cases["chunked (rmsnorm)"],
                  "sequential loop (rmsnorm)": _step_fn(rms_loop, ids, labels, mambapy=False)}  # fmt: skip
    times = time_rounds(step_cases, args.repeats, warmup=1)
    # The loop is ~10x slower: fewer rounds, each paired with a fresh chunked timing.
    loop_times = time_rounds(loop_cases, max(1, args.repeats // 2 if not args.quick else 1), warmup=0)

    # The scan alone (fwd + bwd of h_t = a_t h_{t-1} + b_t) on one Mamba direction's state, by chunk size.
    d_inner, d_state = 2 * (size.get("d_model", 118)), size.get("d_state", 16)
    a = torch.rand(args.batch, args.length, d_inner, d_state).requires_grad_()
    b = torch.randn(args.batch, args.length, d_inner, d_state).requires_grad_()

    def scan_case(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        return lambda: fn().sum().backward()

    from mambapy.pscan import pscan

    scan_cases = {f"chunk {c}": scan_case(lambda c=c: linear_scan(a, b, None, c)) for c in args.scan_chunks}
    scan_cases["mambapy pscan"] = scan_case(lambda: pscan(a, b))
    scan_times = time_rounds(scan_cases, args.repeats, warmup=1)

    model_text = (" (quick: d_model 16, 1 layer, d_state 4)"
                  if args.quick else ", caduceus_ph_1k (d_model 118, 4 layers)")
    shape = f"batch {args.batch} x {args.length} tokens{model_text}"
    lines = [
        "# Caduceus training step on CPU",
        "",
        f"{shape}; torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, Python "
        f"{platform.python_version()}; scan chunk {args.chunk_size}; {args.repeats} interleaved rounds (loop: "
        f"{len(loop_times['chunked (rmsnorm)'])}). Median ms per step; ratio = median of per-round ratios, with "
        "its min-max range over the rounds. The machine is shared (2 cores, other jobs running), so the ranges are "
        "wide; the paired per-round ratios are what to read.",
        "",
        "| comparison | case ms | baseline ms | ratio | range | target |",
        "|---|---|---|---|---|---|",
        ratio_line("sequential loop / chunked scan (whole step)", loop_times, "sequential loop (rmsnorm)",
                   "chunked (rmsnorm)", ">= 5 (speed-up)"),
        ratio_line("chunked scan / mambapy pscan (whole step)", times, "chunked (rmsnorm)", "mambapy pscan (rmsnorm)",
                   "<= 1.5"),
        ratio_line("Derf / RMSNorm (whole step)", times, "derf", "chunked (rmsnorm)", "<= 1.05"),
        "",
        f"Scan alone, forward + backward on ({args.batch}, {args.length}, {d_inner}, {d_state}):",
        "",
        "| scan | median ms | min-max ms |",
        "|---|---|---|",
        *(f"| {name} | {statistics.median(t):.1f} | {min(t):.1f}-{max(t):.1f} |" for name, t in scan_times.items()),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: the machine is shared)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="chunk of our scan in the step")
    p.add_argument("--scan-chunks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--quick", action="store_true", help="tiny model, 64 tokens, 1 round (for the test)")
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    args = p.parse_args(argv)
    for key in ("batch", "length", "repeats", "threads", "chunk_size"):
        if getattr(args, key) < 1:
            p.error(f"argument --{key.replace('_', '-')}: must be a positive integer, got {getattr(args, key)}")
    if args.quick:
        args.length, args.repeats, args.scan_chunks = min(args.length, 64), 1, [8]
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    report = bench(args)
    print(report)
    if args.out is not None:
        args.out.write_text(report)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
