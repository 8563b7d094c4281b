"""``derf-zoo demo``: train ViTs with Derf, DyT and LayerNorm on real handwritten digits and compare them.

The three runs use the recipes ``recipes/vit/vit_nano_{derf,dyt,ln}_digits.yaml`` unchanged (same data,
split, schedule and seed; per-norm settings are in the recipes with the sweep that chose them). The
table says plainly which norm wins here and whether the gap is larger than the evaluation noise of a
360-image validation set; this scale does not test the paper's ImageNet claim.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from derf_zoo.commands._figures import pyplot, save
from derf_zoo.recipes import recipe_path

NORMS = {"derf": "Derf", "dyt": "DyT", "ln": "LayerNorm"}


@dataclass
class RunResult:
    norm: str
    val_acc: float
    val_count: int
    train_count: int
    eval_train_loss: float
    alphas: dict[str, float]
    seconds: float
    checkpoint: Path
    curves: dict[str, list[float]] = field(default_factory=dict)


class _History(L.Callback):
    """Collect per-epoch curves for the plot (the CSV log has them too, but spread over rows)."""

    def __init__(self) -> None:
        self.curves: dict[str, list[float]] = {"val/acc1": [], "train/loss_epoch": []}

    def _record(self, trainer: L.Trainer, key: str) -> None:
        value = trainer.callback_metrics.get(key)
        if value is not None:
            self.curves[key].append(float(value))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, "val/acc1")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, "train/loss_epoch")


def _site_alphas(model: torch.nn.Module) -> dict[str, float]:
    from derf_zoo.callbacks import NormStats

    return {site: float(torch.cat([m.alpha.detach() for m in layers]).mean()) for site, layers in
            NormStats.sites(model).items()}  # fmt: skip


def train_one(tag: str, out: Path, epochs: int | None, progress: bool) -> RunResult:
    from derf_zoo.training import lightning_cli

    recipe = recipe_path(f"vit/vit_nano_{tag}_digits.yaml")
    run_dir = out / f"vit_nano_{tag}_digits"
    args = [
        "-c", str(recipe), f"--trainer.default_root_dir={run_dir}", f"--checkpoint.dirpath={run_dir / 'checkpoints'}",
        f"--trainer.enable_progress_bar={str(progress).lower()}", "--trainer.enable_model_summary=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={run_dir}",
    ]  # fmt: skip
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    cli = lightning_cli(args, run=False)
    history = _History()
    cli.trainer.callbacks.append(history)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    seconds = time.perf_counter() - start
    return RunResult(
        norm=NORMS[tag],
        val_acc=float(cli.trainer.callback_metrics["val/acc1"]),
        val_count=len(cli.datamodule.val_set),
        train_count=len(cli.datamodule.train_eval_set),
        eval_train_loss=float(cli.model.eval_mode_train_loss),
        alphas=_site_alphas(cli.model.model),
        seconds=seconds,
        checkpoint=Path(cli.trainer.checkpoint_callback.last_model_path),
        curves=history.curves,
    )


def verdict(results: list[RunResult]) -> str:
    """Which norm wins, and whether its lead over the runner-up exceeds two standard errors of the difference."""
    ranked = sorted(results, key=lambda r: r.val_acc, reverse=True)
    best, second = ranked[0], ranked[1]
    gap = best.val_acc - second.val_acc
    se = math.sqrt(sum(r.val_acc * (1 - r.val_acc) / r.val_count for r in (best, second)))
    if gap == 0:
        return f"{best.norm} and {second.norm} tie at {100 * best.val_acc:.1f}% val top-1."
    significant = gap > 2 * se
    verdict = (f"{best.norm} wins at this scale ({100 * best.val_acc:.1f}% vs {second.norm} "
               f"{100 * second.val_acc:.1f}%), a gap of {100 * gap:.1f} points; ")  # fmt: skip
    if significant:
        verdict += f"that exceeds twice the evaluation noise ({100 * 2 * se:.1f} points on {best.val_count} images)."
    else:
        verdict += (f"that is within the evaluation noise (2 standard errors = {100 * 2 * se:.1f} points on "
                    f"{best.val_count} images), so this run does not separate them.")  # fmt: skip
    return verdict + (
        " One seed per norm; the spread over seeds is in recipes/vit/digits_sweep.md. The paper's "
        "ImageNet claim is not tested at this scale."
    )


def print_results(results: list[RunResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    n_train, n_val = results[0].train_count, results[0].val_count
    table = Table(
        title=f"ViT-nano on real handwritten digits ({n_train} train / {n_val} val images, 16x16), same recipe and seed"
    )
    table.add_column("norm", style="bold")
    table.add_column("val top-1", justify="right")
    table.add_column("eval-mode train loss", justify="right")
    table.add_column("final alpha (attn / mlp / final)", justify="right")
    table.add_column("wall time", justify="right")
    for r in results:
        alphas = " / ".join(f"{r.alphas[s]:.2f}" for s in ("attn", "mlp", "final") if s in r.alphas) or "-"
        table.add_row(r.norm, f"{100 * r.val_acc:.1f}%", f"{r.eval_train_loss:.3f}", alphas, f"{r.seconds:.0f} s")
    console = Console(width=max(Console().width, 110))
    console.print(table)
    if len(results) > 1:
        console.print(verdict(results))


def plot_curves(results: list[RunResult], path: Path) -> Path:
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        losses, accs = r.curves["train/loss_epoch"], r.curves["val/acc1"]
        ax_loss.plot(range(1, len(losses) + 1), losses, label=r.norm, lw=1.8)
        ax_acc.plot(range(1, len(accs) + 1), [100 * a for a in accs], label=r.norm, lw=1.8)
    ax_loss.set(xlabel="epoch", ylabel="training loss (label smoothing 0.1)", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation accuracy", ylim=(80, 100.5))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("ViT-nano on handwritten digits: Derf vs DyT vs LayerNorm (recipes/vit/vit_nano_*_digits.yaml)")
    return save(fig, path)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train ViTs with Derf, DyT and LayerNorm on real digits and compare them")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where logs, checkpoints and the plot go")
    p.add_argument("--epochs", type=int, default=None, help="override the recipes' epoch budget (for a quick look)")
    p.add_argument("--norms", nargs="+", choices=list(NORMS), default=list(NORMS), help="which recipes to run")
    p.add_argument("--no-progress", action="store_true", help="plain logs instead of progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Lightning's start-up chatter (accelerator lines, tips) would bury the three runs; warnings still show.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning internals vs torch 2.14, not ours
    print(f"Training {len(args.norms)} ViT-nano models on scikit-learn's handwritten digits, one after the other "
          "(about 40 seconds each on 2 CPU cores).")  # fmt: skip
    results: list[Any] = []
    for tag in args.norms:
        print(f"\n== {NORMS[tag]}: recipes/vit/vit_nano_{tag}_digits.yaml")
        results.append(train_one(tag, args.out, args.epochs, progress=not args.no_progress))
    print()
    print_results(results)
    plot = plot_curves(results, args.out / "curves.png")
    print(f"\nTraining curves: {plot}")
    print("Checkpoints (Lightning; `derf-zoo export` turns one into a Hub folder):")
    for r in results:
        print(f"  {r.norm:<10} {r.checkpoint}")
    return 0
