"""HyenaDNA tiny-1k training step (AdamW, next-token loss, 1k tokens per sequence): LayerNorm vs Derf, as
ratios measured side by side in one run.

The two models (same init seed, same batch) are timed round by round, the order alternating every round so
neither always runs first; each round gives one Derf/LN ratio, and the median and the spread (min-max and the
middle half) of those ratios are reported, for wall time and for the process's CPU time (less sensitive to
other processes on a shared machine). Also says which Derf kernel path ran (``derf_zoo.norms.kernels``).

    python benchmarks/hyenadna_step.py [--batch 4] [--length 1024] [--repeats 15] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import torch
from torch import nn

from derf_zoo.benchmarking.arguments import positive_int
from derf_zoo.benchmarking.timing import PairedRatio, time_rounds
from derf_zoo.models import create_model
from derf_zoo.norms.kernels import resolve_kernel
from derf_zoo.norms.layers import Derf

TARGET = 1.05  # issue 12: Derf <= 1.05x LayerNorm for the whole step
LN, DERF = "hyenadna_tiny_1k_ln", "hyenadna_tiny_1k_derf"


def make_step(model: nn.Module, ids: torch.Tensor) -> Callable[[], float]:
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4)

    def step() -> float:
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def run(batch: int, length: int, repeats: int, warmup: int) -> dict[str, object]:
    models = {}
    for name in (LN, DERF):
        torch.manual_seed(0)
        models[name] = create_model(name, max_seq_len=length + 2).train()
    ids = torch.randint(7, 11, (batch, length + 1), generator=torch.Generator().manual_seed(0))
    steps = {name: make_step(m, ids) for name, m in models.items()}
    derf = next(m for m in models[DERF].modules() if isinstance(m, Derf))
    kernel = resolve_kernel(derf.kernel, torch.zeros(1, 128), "derf")
    timings = time_rounds(steps, repeats, warmup, order="alternate")
    return {"times": timings.wall, "cpu": timings.cpu, "ratios": timings.ratio(DERF, LN).per_round,
            "cpu_ratios": timings.ratio(DERF, LN, clock="cpu").per_round, "kernel": kernel}  # fmt: skip


def _ratio_line(label: str, times: dict[str, list[float]]) -> str:
    return f"{label}: {PairedRatio(times[DERF], times[LN]).describe('Derf/LN')}"


def report(result: dict[str, object], args: argparse.Namespace) -> str:
    times, cpu = result["times"], result["cpu"]
    lines = [
        f"HyenaDNA tiny-1k training step (AdamW), batch {args.batch} x {args.length} tokens, fp32, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, {args.repeats} interleaved rounds "
        f"(order alternating), {args.warmup} warm-up steps each",
        "",
        "| model | wall median ms | wall min ms | wall max ms | CPU-time median ms |",
        "|---|---|---|---|---|",
    ]
    for name, t in times.items():
        lines.append(f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} | {max(t):.1f} | "
                     f"{statistics.median(cpu[name]):.1f} |")  # fmt: skip
    lines += [
        "",
        _ratio_line("wall time", times),
        _ratio_line("process CPU time", cpu),
        f"target: Derf <= {TARGET}x LN; Derf kernel path: {result['kernel']!r} "
        "(derf_zoo.norms.kernels.resolve_kernel for a CPU float32 tensor)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=positive_int, default=4)
    parser.add_argument("--length", type=positive_int, default=1024, help="tokens per sequence (tiny-1k: <= 1024)")
    parser.add_argument("--repeats", type=positive_int, default=15, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (batch 1, 64 tokens, 3 rounds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.length, args.repeats, args.warmup = 1, 64, 3, 1
    torch.set_num_threads(args.threads)
    print(report(run(args.batch, args.length, args.repeats, args.warmup), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
