"""``derf-zoo bench``: speed and memory of the norms and of a ViT-B training step, as ratios measured in one run.

Every configuration is timed in the same process, interleaved round by round (A B C A B C ...), and the
median is reported, so machine drift hits all of them alike. Ratios are to ``nn.LayerNorm`` (norms) or
to timm's ``vit_base_patch16_224`` (ViT step), and norms also to a plain copy of the same tensor
(memory bandwidth measured in the same run). ``benchmarks/norms.py`` and ``benchmarks/vit_step.py`` run
the full versions; ``derf-zoo bench`` a quick one. The measurements are :mod:`derf_zoo.benchmarking`'s; this
command parses its flags and prints their tables.
"""

from __future__ import annotations

import argparse

import torch

from derf_zoo.benchmarking.arguments import add_arguments
from derf_zoo.benchmarking.norms import GPT2_SHAPE, VIT_B_SHAPE, NormRow, bench_norms
from derf_zoo.benchmarking.vit_step import StepRow, bench_vit_step
from derf_zoo.commands._help import examples

__all__ = ["main_norms", "main_vit_step"]


# ---- norms ------------------------------------------------------------------------------------------


def print_norms(rows: list[NormRow], copy_ms: float, shape: tuple[int, ...], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    ln = next(r for r in rows if r.name == "nn.LayerNorm")
    act = torch.Size(shape).numel()
    table = Table(title=f"{header}: shape {tuple(shape)}; copy of the tensor = {copy_ms:.2f} ms")
    for col in ("layer", "forward ms", "vs LN", "vs copy", "fwd+bwd ms", "vs LN", "kept for backward"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in rows:
        table.add_row(r.name, f"{r.forward_ms:.2f}", f"{r.forward_ms / ln.forward_ms:.2f}x",
                      f"{r.forward_ms / copy_ms:.2f}x", f"{r.train_ms:.2f}", f"{r.train_ms / ln.train_ms:.2f}x",
                      f"{r.kept_bytes / (act * 4):.2f} act")  # fmt: skip
    Console(width=max(Console().width, 120)).print(table)


def main_norms(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {device}, dtype {dtype}, threads {torch.get_num_threads()}, torch {torch.__version__}; "
          "'act' = activation-sized tensors of float32 kept for the backward (parameters excluded)")  # fmt: skip
    for label, shape in (("ViT-B activations", VIT_B_SHAPE), ("GPT-2 activations", GPT2_SHAPE)):
        rows, copy_ms = bench_norms(shape, device, dtype, args.repeats, args.compile)
        print_norms(rows, copy_ms, shape, label)


# ---- ViT step -------------------------------------------------------------------------------------------


def print_vit_step(rows: list[StepRow], batch: int) -> None:
    from rich.console import Console
    from rich.table import Table

    ref = rows[0]
    table = Table(title=f"ViT-B/16 training step (AdamW) and inference, batch {batch}, 224 px")
    for col in ("model", "train step ms", "vs timm", "inference ms", "vs timm", "activations kept", "vs timm"):
        table.add_column(col, justify="left" if col == "model" else "right")
    if ref.peak_cuda_bytes is not None:
        table.add_column("peak CUDA MiB", justify="right")
    for r in rows:
        cells = [r.name, f"{r.train_ms:.0f}", f"{r.train_ms / ref.train_ms:.3f}x", f"{r.infer_ms:.0f}",
                 f"{r.infer_ms / ref.infer_ms:.3f}x", f"{r.kept_bytes / 2**20:.0f} MiB",
                 f"{r.kept_bytes / ref.kept_bytes:.3f}x"]  # fmt: skip
        if r.peak_cuda_bytes is not None:
            cells.append(f"{r.peak_cuda_bytes / 2**20:.0f}")
        table.add_row(*cells)
    Console(width=max(Console().width, 120)).print(table)


def main_vit_step(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, fp32")
    print_vit_step(bench_vit_step(args.batch, device, args.repeats), args.batch)


# ---- command ----------------------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="quick norm and ViT-B step benchmarks (ratios measured in one run)",
                       **examples("derf-zoo bench norms --repeats 3", "derf-zoo bench vit --device cuda"))
    p.add_argument("what", nargs="?", choices=["norms", "vit", "all"], default="all")
    add_arguments(p, repeats=5, batch=4)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.commands._checks import check_device

    check_device(args.device)  # a missing GPU is one line (main prints the ValueError), not a traceback
    if args.what in ("norms", "all"):
        main_norms(args)
    if args.what in ("vit", "all"):
        main_vit_step(args)
    return 0
