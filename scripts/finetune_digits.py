"""Fine-tune the released Fashion-MNIST ViT-minis on the digits, against the same recipe from random weights.

Runs recipes/vit/vit_mini_derf_finetune_digits.yaml as written and with one override per row, for a few seeds, on
one CPU thread, and writes the table (final-epoch top-1 on the fixed 360-image validation split; no selection on
it) to benchmarks/results/finetune_digits.md and .json (rows run before are kept; --rows reruns some):

    OMP_NUM_THREADS=1 python scripts/finetune_digits.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

RECIPE = Path(__file__).resolve().parents[1] / "recipes/vit/vit_mini_derf_finetune_digits.yaml"
OUT = Path(__file__).resolve().parents[1] / "benchmarks/results/finetune_digits"

#: row -> (what it is, overrides of the recipe)
ROWS: dict[str, tuple[str, list[str]]] = {
    "derf_pretrained": ("Derf, vit_mini_derf.from_ln_fmnist weights (the recipe)", []),
    "derf_pretrained_no_ld": ("Derf, the same weights, no layer decay", ["--model.init_args.layer_decay=null"]),
    "derf_pretrained_ld085": ("Derf, the same weights, layer decay 0.85 (added)",
                              ["--model.init_args.layer_decay=0.85"]),
    "derf_scratch": ("Derf, random weights, the same recipe", ["--model.init_args.model_args.pretrained=false"]),
    "derf_scratch_no_ld": ("Derf, random weights, no layer decay",
                           ["--model.init_args.model_args.pretrained=false", "--model.init_args.layer_decay=null"]),
    "derf_scratch_auto_no_ld": ("Derf (alpha=auto), random weights, no layer decay (added)",
                                ["--model.init_args.model_args.pretrained=false", "--model.init_args.layer_decay=null",
                                 "--model.init_args.model_args.norm=derf(alpha=auto)"]),
    "derf_fmnist_pretrained": ("Derf, vit_mini_derf.fmnist weights (trained from scratch), the same recipe (added)",
                               ["--model.init_args.model=vit_mini_derf.fmnist"]),
    "derf_fmnist_pretrained_no_ld": ("Derf, vit_mini_derf.fmnist weights, no layer decay (added)",
                                     ["--model.init_args.model=vit_mini_derf.fmnist",
                                      "--model.init_args.layer_decay=null"]),
    "ln_pretrained": ("LayerNorm, vit_mini_ln.fmnist weights, the same recipe",
                      ["--model.init_args.model=vit_mini_ln.fmnist"]),
    "ln_pretrained_no_ld": ("LayerNorm, vit_mini_ln.fmnist weights, no layer decay (added)",
                            ["--model.init_args.model=vit_mini_ln.fmnist", "--model.init_args.layer_decay=null"]),
    "ln_scratch": ("LayerNorm, random weights, the same recipe",
                   ["--model.init_args.model=vit_mini_ln.fmnist", "--model.init_args.model_args.pretrained=false"]),
}  # fmt: skip


def run(overrides: list[str], seed: int) -> dict[str, float]:
    """One fit of the recipe; the final validation top-1 and the number of validation images."""
    from derf_zoo.training import lightning_cli

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cli = lightning_cli(["fit", "-c", str(RECIPE), f"--seed_everything={seed}", f"--trainer.default_root_dir={tmp}",
                             f"--checkpoint.dirpath={tmp}/ckpt", "--trainer.enable_progress_bar=false",
                             "--trainer.enable_model_summary=false", "--trainer.logger=false", *overrides])  # fmt: skip
        seconds = time.perf_counter() - start
    n = len(cli.datamodule.val_set)
    acc = float(cli.trainer.callback_metrics["val/acc1"])
    return {"seed": seed, "acc1": 100 * acc, "correct": round(acc * n), "n": n, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS), help="none: redraw the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = OUT.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {}  # rows run before are kept
    results.update({row: [run(ROWS[row][1], s) for s in args.seeds] for row in args.rows})
    results = {row: results[row] for row in ROWS if row in results}
    path.write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# Fine-tuning the Fashion-MNIST ViT-minis on the digits",
        "",
        f"`python scripts/finetune_digits.py --seeds {' '.join(map(str, args.seeds))}` "
        f"({platform.processor() or platform.machine()}, 1 thread of the shared 2-core development machine, torch "
        f"{torch.__version__}): "
        "recipes/vit/vit_mini_derf_finetune_digits.yaml (20 epochs, 460 steps) with one override per row. "
        "Top-1 after the last epoch on the fixed validation split (360 images, split_seed 0; nothing selected on "
        "it). ± is the binomial standard error of one run, sqrt(p(1-p)/360); per-seed values follow. The recipe's "
        "settings were fixed before any run; rows marked (added) were run after the first six were seen.",
        "",
        "| run | top-1 (mean of seeds) | ± binomial s.e. | per seed | s / run |",
        "|---|---|---|---|---|",
    ]
    for row, runs in results.items():
        mean = statistics.mean(r["acc1"] for r in runs)
        se = 100 * math.sqrt(mean / 100 * (1 - mean / 100) / runs[0]["n"])
        seeds = ", ".join(f"{r['acc1']:.1f}" for r in runs)
        secs = statistics.mean(r["seconds"] for r in runs)
        lines.append(f"| {ROWS[row][0]} | {mean:.1f} % | {se:.1f} | {seeds} | {secs:.0f} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
