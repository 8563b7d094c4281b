"""``derf-zoo benchmark fmnist``: every norm on Fashion-MNIST over paired seeds, resumable, with a verdict per norm.

Each (norm, seed) run trains the suite's recipe unchanged except for the norm and the seed, through the same
Lightning CLI as ``derf-zoo fit``. Seeds are paired: run ``seed`` of every norm starts from the same weights
(a norm's own parameters are deterministic, so the random draws line up) and sees the batches in the same
order. Every finished run leaves ``runs/<norm>/seed<k>/result.json`` (+ its weights as a Hub folder) under
``--out``; a stopped benchmark skips those and goes on, and ``--report-only`` renders the tables from whatever
runs have finished. The verdict per norm is a paired comparison with LayerNorm: the mean of the per-seed
differences in test top-1 and a 95% t interval over seeds.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from derf_zoo.models.vit import FASHION_MNIST_DATA_CFG
from derf_zoo.norms.sites import site_alphas
from derf_zoo.recipes import RECIPES_DIR, recipe_path

__all__ = ["NORMS", "SUITES", "Run", "add_parser", "load_results", "plan", "render", "run", "summarise", "verdicts"]

# The default grid: key (a folder name) -> norm spec. Derf twice: the paper's alpha 0.5, and alpha calibrated
# to 1/std(input) per layer on the first batch (what the digits sweep found necessary at short schedules).
NORMS: dict[str, str] = {
    "layernorm": "layernorm",
    "rmsnorm": "rmsnorm",
    "dyt": "dyt",
    "derf": "derf",
    "derf_auto": "derf(alpha=auto)",
}
# --norms all adds the paper's other searched point-wise functions (PAPER.md §1.4, Tab. 7), each at alpha 0.5.
SEARCHED = (
    "tanh", "arctan", "satursin", "expsign", "exproot", "relsign", "isru", "cubsign", "logsign_clip",
    "logquad_clip", "power23_clip", "linear_clip", "arcsinh_clip", "smoothsign", "saturlog",
)  # fmt: skip
LABELS = {
    "layernorm": "LayerNorm", "rmsnorm": "RMSNorm", "dyt": "DyT", "derf": "Derf", "derf_auto": "Derf (alpha=auto)",
}  # fmt: skip
BASELINE = "layernorm"
# What the saved models expect as input (config.json's pretrained_cfg): the data module's 28x28 grey, normalised.


@dataclass(frozen=True)
class Suite:
    recipe: str  # relative to derf_zoo/recipes
    description: str


SUITES = {
    "fmnist": Suite(
        "vit/vit_mini_fmnist.yaml",
        "Fashion-MNIST (60,000 train = 54,000 + 6,000 val / 10,000 test, 28x28 grey, 10 classes)",
    ),
}

# Two-sided 95% critical values of Student's t by degrees of freedom (beyond 30: the normal's 1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


# ---- the grid ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    norm: str  # key
    spec: str
    seed: int

    def folder(self, out: Path) -> Path:
        return out / "runs" / self.norm / f"seed{self.seed}"

    def result_file(self, out: Path) -> Path:
        return self.folder(out) / "result.json"


def resolve_norms(names: list[str]) -> dict[str, str]:
    """``--norms`` to {key: spec}: the defaults' keys, any registered point-wise name, ``default`` or ``all``."""
    from derf_zoo.norms.registry import list_norms, unknown_name_error

    registered = set(list_norms()) - {"identity"}
    valid = sorted(set(NORMS) | registered | {"all", "default"})
    chosen: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key == "default":
            chosen.update(NORMS)
        elif key == "all":
            chosen.update(NORMS)
            chosen.update({n: n for n in SEARCHED if n in registered})
        elif key in NORMS:
            chosen[key] = NORMS[key]
        elif key in registered:
            chosen[key] = key
        else:
            raise unknown_name_error("benchmark norm", name, valid)
    return chosen


def plan(norms: dict[str, str], seeds: int) -> list[Run]:
    """Seed-major order: every norm's seed 0 first, so a stopped grid already holds complete pairs."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (got {seeds}); the verdicts need 2 or more, 5 is the default.")
    return [Run(key, spec, seed) for seed in range(seeds) for key, spec in norms.items()]


def settings(recipe: Path, overrides: list[str]) -> dict[str, Any]:
    """What makes two runs comparable: the recipe's settings and the overrides (a different one is another grid).

    The recipe is fingerprinted by its parsed content, so editing its comments does not orphan recorded runs.
    """
    import yaml

    content = json.dumps(yaml.safe_load(recipe.read_text()), sort_keys=True)
    return {
        "recipe": str(recipe.relative_to(RECIPES_DIR)) if recipe.is_relative_to(RECIPES_DIR) else str(recipe),
        "recipe_sha256": hashlib.sha256(content.encode()).hexdigest(),
        "overrides": list(overrides),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # an unfinished or damaged record: the run is done again


# ---- one run -------------------------------------------------------------------------------------------------


def _curves_callback():
    import lightning as L

    class Curves(L.Callback):
        """Per-epoch training loss and validation metrics, for the plot."""

        def __init__(self) -> None:
            self.curves: dict[str, list[float]] = {"train/loss_epoch": [], "val/acc1": [], "val/loss": []}

        def _take(self, trainer: L.Trainer, key: str) -> None:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.curves[key].append(float(value))

        def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if not trainer.sanity_checking:
                self._take(trainer, "val/acc1")
                self._take(trainer, "val/loss")

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self._take(trainer, "train/loss_epoch")

    return Curves()


def train_one(r: Run, out: Path, recipe: Path, overrides: list[str], record: dict[str, Any]) -> dict[str, Any]:
    """Train, test and record one run; the result file is written last (atomically), so it means 'finished'."""
    from derf_zoo.training import lightning_cli

    folder = r.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    args = [
        "-c", str(recipe), f"--seed_everything={r.seed}", f"--model.init_args.model_args.norm={r.spec}",
        f"--trainer.default_root_dir={folder}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.logger=false",
        # A run takes minutes: a stopped benchmark redoes the unfinished run rather than resuming it mid-way.
        f"--checkpoint.dirpath={folder / 'checkpoints'}", "--checkpoint.save_last=false", "--checkpoint.save_top_k=0",
        *overrides,
    ]  # fmt: skip
    cli = lightning_cli(args, run=False)
    curves = _curves_callback()
    cli.trainer.callbacks.append(curves)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - start
    val = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("val/")}
    (test,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    dm = cli.datamodule
    result = {
        **record,
        "norm": r.norm,
        "spec": r.spec,
        "seed": r.seed,
        "test_acc1": float(test["test/acc1"]),
        "test_loss": float(test["test/loss"]),
        "val_acc1": val.get("val/acc1"),
        "val_loss": val.get("val/loss"),
        "eval_train_loss": float(cli.model.eval_mode_train_loss),
        "alphas": site_alphas(cli.model.model),
        "n_train": len(dm.train_eval_set),
        "n_val": len(dm.val_set),
        "n_test": len(dm.test_set) if getattr(dm, "test_set", None) is not None else len(dm.val_set),
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "parameters": sum(p.numel() for p in cli.model.model.parameters()),
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - start,
        "curves": curves.curves,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    net = cli.model.model
    net.pretrained_cfg = {**getattr(net, "pretrained_cfg", {}), **FASHION_MNIST_DATA_CFG}
    net.save_pretrained(
        folder / "model", overwrite=True,  # a run stopped after this line is redone whole
        metrics={"acc1": 100 * result["test_acc1"], "eval_mode_train_loss": result["eval_train_loss"]},
        dataset="fashion_mnist", split="test (official 10,000 images)", recipe=record["settings"]["recipe"],
        produced_by=f"derf-zoo benchmark fmnist ({r.spec}, seed {r.seed}); final-epoch weights",
    )  # fmt: skip
    tmp = r.result_file(out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(r.result_file(out))
    del cli
    gc.collect()
    return result


# ---- results -----------------------------------------------------------------------------------------------


def load_results(out: Path) -> list[dict[str, Any]]:
    """Every finished run recorded under ``out`` (any norms, any seeds)."""
    found = [read_result(p) for p in sorted((out / "runs").glob("*/seed*/result.json"))]
    return [r for r in found if r is not None]


def _mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per norm: test top-1 mean and SE over seeds, the paired difference with LayerNorm, train loss, alphas."""
    by_norm: dict[str, dict[int, dict[str, Any]]] = {}
    for r in results:
        by_norm.setdefault(r["norm"], {})[r["seed"]] = r
    base = by_norm.get(BASELINE, {})
    order = [k for k in NORMS if k in by_norm] + sorted(k for k in by_norm if k not in NORMS)
    rows = []
    for key in order:
        runs = by_norm[key]
        seeds = sorted(runs)
        acc = [runs[s]["test_acc1"] for s in seeds]
        loss = [runs[s]["eval_train_loss"] for s in seeds]
        row: dict[str, Any] = {
            "norm": key, "label": LABELS.get(key, key), "spec": runs[seeds[0]]["spec"], "seeds": seeds,
            "acc": _mean_se(acc), "train_loss": _mean_se(loss),
            "seconds": statistics.fmean(runs[s]["seconds"] for s in seeds),
        }  # fmt: skip
        sites = sorted({site for s in seeds for site in runs[s]["alphas"]}, key=["attn", "mlp", "final"].index)
        row["alphas"] = {site: statistics.fmean(runs[s]["alphas"][site] for s in seeds) for site in sites}
        paired = [s for s in seeds if s in base]
        if key != BASELINE and paired:
            diffs = [runs[s]["test_acc1"] - base[s]["test_acc1"] for s in paired]
            mean, se = _mean_se(diffs)
            row["diff"] = {"mean": mean, "se": se, "n": len(diffs), "wins": sum(d > 0 for d in diffs),
                           "half_width": t95(len(diffs) - 1) * se if len(diffs) > 1 else float("nan")}  # fmt: skip
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """One plain sentence per norm: better or worse than LayerNorm beyond the noise, or not separated from it."""
    sentences = []
    for row in rows:
        d = row.get("diff")
        if row["norm"] == BASELINE:
            continue
        if d is None:
            sentences.append(f"{row['label']}: no LayerNorm run with the same seed yet, so no comparison.")
            continue
        pts = f"{100 * d['mean']:+.2f} points"
        if d["n"] < 2:
            sentences.append(f"{row['label']}: {pts} against LayerNorm on one seed; two or more seeds are needed to "
                             "tell that from the noise.")  # fmt: skip
            continue
        lo, hi = 100 * (d["mean"] - d["half_width"]), 100 * (d["mean"] + d["half_width"])
        detail = f"{pts} ± {100 * d['se']:.2f} (SE) over {d['n']} paired seeds, 95% interval {lo:+.2f} to {hi:+.2f}"
        if lo > 0:
            sentences.append(f"{row['label']} beats LayerNorm beyond the noise: {detail}.")
        elif hi < 0:
            sentences.append(f"{row['label']} is worse than LayerNorm beyond the noise: {detail}.")
        else:
            sentences.append(f"{row['label']} does not beat LayerNorm beyond the noise: {detail} "
                             f"(ahead on {d['wins']} of {d['n']} seeds).")  # fmt: skip
    return sentences


def _fmt(mean: float, se: float, scale: float = 100.0, digits: int = 2, sign: bool = False) -> str:
    body = f"{scale * mean:+.{digits}f}" if sign else f"{scale * mean:.{digits}f}"
    return body if math.isnan(se) else f"{body} ± {scale * se:.{digits}f}"


def _binomial_se(rows: list[dict[str, Any]], n: int) -> float:
    p = rows[0]["acc"][0]
    return math.sqrt(p * (1 - p) / n)


def markdown(rows: list[dict[str, Any]], results: list[dict[str, Any]], title: str) -> str:
    """The results page: settings, machine, the table, one sentence per norm."""
    first = results[0]
    lines = [f"# {title}", ""]
    lines.append(
        f"Recipe `derf_zoo/recipes/{first['settings']['recipe']}` "
        f"(settings sha256 {first['settings']['recipe_sha256'][:12]}), "
        f"overrides {first['settings']['overrides'] or 'none'}; {first['parameters']:,} parameters, "
        f"{first['epochs']} epochs ({first['steps']} steps); {first['n_train']:,} train / {first['n_val']:,} val / "
        f"{first['n_test']:,} test images. Same recipe for every norm; only the norm and the seed change. "
        "Seeds are paired: seed k of every norm starts from the same weights and sees the same batch order."
    )
    m = first["machine"]
    lines += ["", f"Machine: {m.get('gpu') or m['cpu']}, {m['cpu_count']} CPU cores, {m['torch_threads']} torch "
              f"thread(s), torch {m['torch']}, {m['platform']}.", ""]  # fmt: skip
    lines.append("| norm | spec | seeds | test top-1 % (mean ± SE) | Δ vs LayerNorm, paired (points ± SE) "
                 "| eval-mode train loss | final alpha (attn / mlp / final) | time per run |")  # fmt: skip
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in rows:
        d = row.get("diff")
        diff = "—" if d is None else f"{_fmt(d['mean'], d['se'], sign=True)} (n={d['n']})"
        alphas = " / ".join(f"{a:.2f}" for a in row["alphas"].values()) or "—"
        lines.append(
            f"| {row['label']} | `{row['spec']}` | {len(row['seeds'])} | {_fmt(*row['acc'])} | {diff} | "
            f"{_fmt(*row['train_loss'], scale=1.0, digits=4)} | {alphas} | {row['seconds'] / 60:.1f} min |"
        )
    lines += ["", *[f"- {s}" for s in verdicts(rows)], ""]
    lines.append(
        "Test top-1 is on the official 10,000 test images, measured once after the last epoch (no model selection "
        "on test). Eval-mode train loss: the paper's §6.1 protocol, cross entropy in eval mode over the "
        "training split without augmentation. The 95% interval is a t interval over the paired per-seed differences: "
        "it covers seed-to-seed variation (initialisation and batch order) on this fixed test set, not the test "
        f"set's own sampling noise (a binomial standard error of {100 * _binomial_se(rows, first['n_test']):.2f} "
        f"points for one model at this accuracy on {first['n_test']:,} images)."
    )
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    from derf_zoo.commands._figures import pyplot, save

    plt = pyplot()
    fig, (ax_loss, ax_acc, ax_diff) = plt.subplots(1, 3, figsize=(16, 4.4))
    for row in rows:
        runs = [r for r in results if r["norm"] == row["norm"]]
        for ax, key, scale in ((ax_loss, "train/loss_epoch", 1.0), (ax_acc, "val/acc1", 100.0)):
            n = min(len(r["curves"][key]) for r in runs)
            if n == 0:
                continue
            mean = [scale * statistics.fmean(r["curves"][key][i] for r in runs) for i in range(n)]
            ax.plot(range(1, n + 1), mean, marker="o", lw=1.6, label=f"{row['label']} ({len(runs)} seeds)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (mean over seeds)", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="val top-1 % (mean over seeds)", title="validation accuracy")
    compared = [row for row in rows if row.get("diff")]
    ys = range(len(compared))
    ax_diff.errorbar([100 * row["diff"]["mean"] for row in compared], ys,
                     xerr=[0 if math.isnan(row["diff"]["half_width"]) else 100 * row["diff"]["half_width"]
                           for row in compared], fmt="o", capsize=4)  # fmt: skip
    for row in compared:
        runs = {r["seed"]: r for r in results if r["norm"] == row["norm"]}
        base = {r["seed"]: r for r in results if r["norm"] == BASELINE}
        y = compared.index(row)
        ax_diff.scatter([100 * (runs[s]["test_acc1"] - base[s]["test_acc1"]) for s in runs if s in base],
                        [y + 0.15] * sum(s in base for s in runs), s=10, color="grey", alpha=0.7)  # fmt: skip
    ax_diff.axvline(0, color="black", lw=1)
    ax_diff.set_yticks(list(ys), [row["label"] for row in compared])
    ax_diff.invert_yaxis()  # the table's order, top to bottom
    ax_diff.set(xlabel="test top-1 minus LayerNorm's, same seed (points)",
                title="paired difference with LayerNorm\n(bars: 95% interval; grey dots: seeds)")  # fmt: skip
    for ax in (ax_loss, ax_acc, ax_diff):
        ax.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    return save(fig, path)


def render(out: Path, title: str | None = None, console: Any = None) -> Path | None:
    """Write results.md, results.json and curves.png under ``out`` from the finished runs, and print the table."""
    results = load_results(out)
    if not results:
        print(f"No finished runs under {out / 'runs'} yet.")
        return None
    grids = {json.dumps(r["settings"], sort_keys=True) for r in results}
    if len(grids) > 1:
        raise ValueError(f"{out} holds runs of {len(grids)} different settings (recipe or overrides); render "
                         "each grid from its own --out folder.")  # fmt: skip
    title = title or f"Norms on Fashion-MNIST: {results[0]['settings']['recipe']}"
    rows = summarise(results)
    page = markdown(rows, results, title)
    (out / "results.md").write_text(page)
    (out / "results.json").write_text(json.dumps({"rows": rows, "verdicts": verdicts(rows)}, indent=2) + "\n")
    figure = plot(results, rows, out / "curves.png", title)
    _print(rows, title, console)
    print(f"\nWritten: {out / 'results.md'}, {out / 'results.json'}, {figure}")
    return out / "results.md"


def _print(rows: list[dict[str, Any]], title: str, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name, justify in (("norm", "left"), ("seeds", "right"), ("test top-1 %", "right"),
                          ("Δ vs LN (paired)", "right"), ("eval-mode train loss", "right"),
                          ("final alpha", "right"), ("min/run", "right")):  # fmt: skip
        table.add_column(name, justify=justify)
    for row in rows:
        d = row.get("diff")
        table.add_row(
            row["label"], str(len(row["seeds"])), _fmt(*row["acc"]),
            "—" if d is None else _fmt(d["mean"], d["se"], sign=True),
            _fmt(*row["train_loss"], scale=1.0, digits=4),
            " / ".join(f"{a:.2f}" for a in row["alphas"].values()) or "—", f"{row['seconds'] / 60:.1f}",
        )  # fmt: skip
    console = console or Console(width=max(Console().width, 120))
    console.print(table)
    for sentence in verdicts(rows):
        console.print("- " + sentence)


# ---- the command -----------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _norm_name(text: str) -> str:
    try:
        resolve_norms([text])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes K/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return k, n


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="train every norm over paired seeds on a real benchmark (Fashion-MNIST) and compare with LayerNorm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("suite", choices=list(SUITES), help="the benchmark (fmnist: Fashion-MNIST)")
    p.add_argument("--norms", nargs="+", default=["default"], type=_norm_name,
                   help=f"norms to run: default ({', '.join(NORMS)}), all (also the paper's other searched "
                        "functions), or any of those names / registered point-wise norms")  # fmt: skip
    p.add_argument("--seeds", type=_positive, default=5, help="seeds per norm, 0..N-1, paired across norms (5)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default outputs/benchmark_<suite>)")
    p.add_argument("--recipe", default=None, help="recipe instead of the suite's (vit/vit_small_fmnist.yaml)")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=_positive, default=None, help="override the recipe's epoch budget")
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Lightning CLI override for every run (e.g. --set trainer.accelerator=gpu)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the runs, done and to do; train nothing")
    p.add_argument("--report-only", action="store_true", help="render the table and plot from the finished runs")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only runs K, K+N, K+2N, ... of the grid (N processes sharing one GPU); render afterwards "
                        "with --report-only")  # fmt: skip
    p.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if args.data_root is not None:
        extra.append(f"--data.init_args.root={args.data_root}")
    if args.epochs is not None:
        extra.append(f"--trainer.max_epochs={args.epochs}")
    for item in args.overrides:
        if "=" not in item:
            raise ValueError(f"--set takes KEY=VALUE (e.g. trainer.accelerator=gpu), got {item!r}.")
        extra.append("--" + item.lstrip("-"))
    return extra


class _Progress:
    """One line per run with the time left (the mean time of this session's runs times the runs left)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.times = total, 0, []
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", dynamic_ncols=True)

    def start(self, r: Run, index: int) -> None:
        left = ""
        if self.times:
            left = f", about {statistics.fmean(self.times) * (self.total - self.done) / 60:.0f} min left"
        msg = f"[{index}/{self.total}] {r.norm} seed {r.seed} ({r.spec}){left}"
        if self.bar is not None:
            self.bar.set_description(f"{r.norm} seed {r.seed}")
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def finish(self, seconds: float, result: dict[str, Any]) -> None:
        self.done += 1
        self.times.append(seconds)
        msg = (f"    test top-1 {100 * result['test_acc1']:.2f}%, "
               f"eval-mode train loss {result['eval_train_loss']:.4f}, {seconds / 60:.1f} min")  # fmt: skip
        if self.bar is not None:
            self.bar.update(1)
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    suite = SUITES[args.suite]
    out = args.out or Path(f"outputs/benchmark_{args.suite}")
    recipe = recipe_path(args.recipe or suite.recipe)
    if args.report_only:
        render(out)
        return 0
    norms = resolve_norms(args.norms)
    runs = plan(norms, args.seeds)
    if args.shard is not None:
        k, n = args.shard
        runs = runs[k::n]
    overrides = _overrides(args)
    grid = settings(recipe, overrides)
    todo = []
    for r in runs:
        done = read_result(r.result_file(out))
        if done is not None and done["settings"] != grid:
            raise ValueError(
                f"{r.result_file(out)} was recorded with other settings ({done['settings']}) than this benchmark "
                f"({grid}); use another --out, or delete that folder to redo it."
            )
        if done is None:
            todo.append(r)
    print(f"{args.suite}: {suite.description}; recipe {grid['recipe']}; {len(norms)} norms x {args.seeds} seeds = "
          f"{len(runs)} runs, {len(runs) - len(todo)} already recorded under {out / 'runs'}, "
          f"{len(todo)} to run.")  # fmt: skip
    if args.dry_run:
        for r in runs:
            print(f"  {'done' if r not in todo else 'todo'}  {r.norm:<14} seed {r.seed}  {r.spec}")
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning internals vs torch 2.14, not ours
    record = {"settings": grid, "machine": machine()}
    progress = _Progress(len(todo))
    try:
        for i, r in enumerate(todo, 1):
            progress.start(r, i)
            start = time.perf_counter()
            result = train_one(r, out, recipe, overrides, record)
            progress.finish(time.perf_counter() - start, result)
    finally:
        progress.close()
    print()
    if args.shard is not None:
        print(f"Shard {args.shard[0]}/{args.shard[1]} done; when every shard is, render with --report-only.")
        return 0
    render(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m derf_zoo.commands.benchmark fmnist ...``: the same command without the ``derf-zoo`` script."""
    parser = argparse.ArgumentParser(prog="python -m derf_zoo.commands.benchmark")
    add_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["benchmark", *(sys.argv[1:] if argv is None else argv)])
    return parsed.run(parsed)


if __name__ == "__main__":
    sys.exit(main())
