"""Norm layers at ViT-B (32, 197, 768) and GPT-2 (8, 1024, 768) shapes: forward, forward+backward and the
activations kept for the backward, as ratios to nn.LayerNorm and to a copy, all measured in one run.

    python benchmarks/norms.py [--device cuda] [--dtype bfloat16] [--compile] [--repeats 25]
        [--shapes vit,gpt2,big] [--json results.json] [--markdown results.md]

It also prints whether the issue's targets are met by the path ``kernel="auto"`` takes (Triton on CUDA, the
C kernel on the CPU): Derf forward+backward at most 1.1x the fused LayerNorm, and at least 70% of the
bandwidth of a plain copy. Bandwidth counts the activation-sized tensors a pass must move at least: a copy
2 (read, write), a forward 2 (read x, write y), a forward+backward 5 (x, y; x, dy, dx). On a large GPU the
ViT-B and GPT-2 tensors are copied in ~10 us, where launch overhead rather than bandwidth sets the time:
``big`` (64, 4096, 768) is the shape whose ratios measure the kernels.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from derf_zoo.benchmarking.arguments import add_arguments
from derf_zoo.benchmarking.norms import GPT2_SHAPE, VIT_B_SHAPE, bench_norms

SHAPES = {"vit": ("ViT-B activations", VIT_B_SHAPE), "gpt2": ("GPT-2 activations", GPT2_SHAPE),
          "big": ("large activations", (64, 4096, 768)), "tiny": ("smoke test", (4, 64, 768))}  # fmt: skip
TARGET_VS_LAYERNORM = 1.1
TARGET_BANDWIDTH = 0.7


def _auto_row(rows, family: str):
    """The row of the path kernel='auto' takes for ``family`` ("Derf" or "DyT")."""
    names = {r.name: r for r in rows}
    return names.get(f"{family} (triton)") or names[f"{family} (fused)"]


def targets(rows, copy_ms: float) -> dict:
    """Ratios of the auto paths of Derf and DyT to LayerNorm and to the copy, and whether the targets are met."""
    ln = next(r for r in rows if r.name == "nn.LayerNorm")
    out = {}
    for family in ("Derf", "DyT"):
        r = _auto_row(rows, family)
        train_vs_ln = r.train_ms / ln.train_ms
        train_bandwidth = 2.5 * copy_ms / r.train_ms  # 5 tensors moved against the copy's 2
        out[family] = {
            "path": r.name,
            "forward_vs_layernorm": r.forward_ms / ln.forward_ms,
            "train_vs_layernorm": train_vs_ln,
            "forward_bandwidth_vs_copy": copy_ms / r.forward_ms,
            "train_bandwidth_vs_copy": train_bandwidth,
            "layernorm_train_bandwidth_vs_copy": 2.5 * copy_ms / ln.train_ms,
            "met_train_vs_layernorm": train_vs_ln <= TARGET_VS_LAYERNORM,
            "met_train_bandwidth": train_bandwidth >= TARGET_BANDWIDTH,
        }
    return out


def markdown(rows, copy_ms: float, shape, header: str) -> str:
    ln = next(r for r in rows if r.name == "nn.LayerNorm")
    act = torch.Size(shape).numel()
    lines = [f"### {header}: shape {tuple(shape)}; copy of the tensor = {copy_ms:.3f} ms", "",
             "| layer | forward ms | vs LN | vs copy | fwd+bwd ms | vs LN | kept for backward |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.name} | {r.forward_ms:.3f} | {r.forward_ms / ln.forward_ms:.2f}x | "
                     f"{r.forward_ms / copy_ms:.2f}x | {r.train_ms:.3f} | {r.train_ms / ln.train_ms:.2f}x | "
                     f"{r.kept_bytes / (act * 4):.2f} act |")  # fmt: skip
    return "\n".join(lines)


def target_lines(t: dict) -> list[str]:
    lines = []
    for family, v in t.items():
        ok = "MET" if v["met_train_vs_layernorm"] else "NOT MET"
        lines.append(f"- {family} [{v['path']}]: fwd+bwd {v['train_vs_layernorm']:.2f}x LayerNorm "
                     f"(target <= {TARGET_VS_LAYERNORM}x: {ok})")  # fmt: skip
        ok = "MET" if v["met_train_bandwidth"] else "NOT MET"
        lines.append(f"- {family} [{v['path']}]: fwd+bwd at {v['train_bandwidth_vs_copy']:.0%} of copy bandwidth "
                     f"(target >= {TARGET_BANDWIDTH:.0%}: {ok}); forward {v['forward_bandwidth_vs_copy']:.0%}; "
                     f"LayerNorm fwd+bwd {v['layernorm_train_bandwidth_vs_copy']:.0%}")  # fmt: skip
    return lines


def main(args: argparse.Namespace) -> int:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    env = {"device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "python": platform.python_version(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
           "hardware": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()}  # fmt: skip
    print(" ".join(f"{k} {v}," for k, v in env.items()).rstrip(",") + "; 'act' = activation-sized float32 tensors kept")
    results, report = [], [f"## Norms: {env['hardware']}, {args.dtype}, torch {env['torch']} ({env['time']})"]
    for key in args.shapes.split(","):
        label, shape = SHAPES[key]
        rows, copy_ms = bench_norms(shape, device, dtype, args.repeats, args.compile)
        t = targets(rows, copy_ms)
        table = markdown(rows, copy_ms, shape, label)
        print(table, *target_lines(t), "", sep="\n", flush=True)
        report += ["", table, "", *target_lines(t)]
        results.append({"shape": list(shape), "label": label, "copy_ms": copy_ms, "targets": t,
                        "rows": [vars(r) for r in rows]})  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=2))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        with open(args.markdown, "a") as f:
            f.write("\n".join(report) + "\n\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, repeats=25, batch=8)
    parser.add_argument("--shapes", default="vit,gpt2", help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--json", help="write the rows, ratios and targets to this JSON file")
    parser.add_argument("--markdown", help="append the tables and targets to this Markdown file")
    sys.exit(main(parser.parse_args()))
