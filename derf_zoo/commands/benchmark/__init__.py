"""``derf-zoo benchmark fmnist``: every norm on Fashion-MNIST over paired seeds, resumable, with a verdict per norm.

Each (norm, seed) run trains the suite's recipe unchanged except for the norm and the seed, through the same
Lightning CLI as ``derf-zoo fit``. Seeds are paired: run ``seed`` of every norm starts from the same weights
(a norm's own parameters are deterministic, so the random draws line up) and sees the batches in the same
order. Every finished run leaves ``runs/<norm>/seed<k>/result.json`` (+ its weights as a Hub folder) under
``--out``; a stopped benchmark skips those and goes on, and ``--report-only`` renders the tables from whatever
runs have finished. Several processes can share one ``--out`` (each run is claimed, see ``claim.py``). The verdict
per norm is a paired comparison with LayerNorm: the mean of the per-seed differences in test top-1 and a 95% t
interval over seeds.

``--grid FILE`` runs a pre-registered study instead: several such grids (cells of training length, training-set size
and augmentation) fixed in a YAML file before any run, cell by cell, each finished run appended to a JSON-lines
record as it lands (:mod:`derf_zoo.commands.benchmark.study`).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from derf_zoo.commands._help import examples
from derf_zoo.commands.benchmark.claim import claim_run
from derf_zoo.commands.benchmark.grid import (
    BASELINE,
    LABELS,
    NORMS,
    SUITES,
    Run,
    load_results,
    machine,
    plan,
    read_result,
    resolve_norms,
    settings,
    train_one,
)
from derf_zoo.commands.benchmark.report import render, summarise, verdicts
from derf_zoo.commands.benchmark.study import append_record, load_study, study_runs
from derf_zoo.commands.benchmark.study_report import write_study_report
from derf_zoo.recipes import recipe_path

__all__ = [
    "BASELINE",
    "LABELS",
    "NORMS",
    "SUITES",
    "Run",
    "add_parser",
    "load_results",
    "main",
    "plan",
    "render",
    "resolve_norms",
    "run",
    "summarise",
    "verdicts",
]


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
        **examples("derf-zoo benchmark fmnist --dry-run", "derf-zoo benchmark fmnist --threads 1",
                   "derf-zoo benchmark fmnist --report-only"),
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
    p.add_argument("--train-size", type=_positive, default=None,
                   help="train on a fixed stratified subset of this many training images (default: all)")
    p.add_argument("--max-shift", type=int, default=None, help="training augmentation: random shifts up to N pixels")
    p.add_argument("--hflip", action="store_true", help="training augmentation: random horizontal flips")
    p.add_argument("--grid", type=Path, default=None,
                   help="run a pre-registered study file instead (cells of epochs / train size / augmentation; see "
                        "benchmarks/results/generalization_fmnist_grid.yaml); each cell under --out/<cell>")
    p.add_argument("--cells", nargs="+", default=None, help="with --grid: only these cells")
    p.add_argument("--record", type=Path, default=None,
                   help="append every finished run, as it lands, as one JSON line to this file")
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Lightning CLI override for every run (e.g. --set trainer.accelerator=gpu)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the runs, done and to do; train nothing")
    p.add_argument("--report-only", action="store_true", help="render the table and plot from the finished runs")
    p.add_argument("--shard", type=_shard, default=None, metavar="K/N",
                   help="run only runs K, K+N, K+2N, ... of the grid or study (e.g. N machines; processes on one "
                        "machine can simply share the folder: each run is claimed); render afterwards with "
                        "--report-only")  # fmt: skip
    p.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if args.data_root is not None:
        extra.append(f"--data.init_args.root={args.data_root}")
    if args.epochs is not None:
        extra.append(f"--trainer.max_epochs={args.epochs}")
    if args.train_size is not None:
        extra.append(f"--data.init_args.train_size={args.train_size}")
    if args.max_shift is not None:
        extra.append(f"--data.init_args.max_shift={args.max_shift}")
    if args.hflip:
        extra.append("--data.init_args.hflip=true")
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
            # at most: runs another process takes are skipped, not trained, when this one reaches them
            left = f", at most {statistics.fmean(self.times) * (self.total - index + 1) / 60:.0f} min left"
        msg = f"[{index}/{self.total}] {r.norm} seed {r.seed} ({r.spec}){left}"
        if self.bar is not None:
            self.bar.set_description(f"{r.norm} seed {r.seed}")
            self.bar.write(msg)
        else:
            print(msg, flush=True)

    def skip(self, r: Run, index: int, why: str) -> None:
        msg = f"[{index}/{self.total}] {r.norm} seed {r.seed}: skipped, {why}"
        if self.bar is not None:
            self.bar.update(1)
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
    if args.grid is not None:
        return run_study(args, recipe)
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
            result = _train_claimed(progress, i, r, out, recipe, overrides, record)
            if result is not None and args.record is not None:
                append_record(args.record, result)
    finally:
        progress.close()
    print()
    if args.shard is not None:
        print(f"Shard {args.shard[0]}/{args.shard[1]} done; when every shard is, render with --report-only.")
        return 0
    render(out)
    return 0


def run_study(args: argparse.Namespace, recipe: Path) -> int:
    """Run (or list, or render) the cells of a pre-registered study file, resumably (see ``study.py``)."""
    study = load_study(args.grid)
    if study.suite != args.suite:
        raise ValueError(f"{args.grid} is a study of suite {study.suite!r}, not {args.suite!r}.")
    axes = [f for f in ("epochs", "train_size", "max_shift", "norms") if getattr(args, f) not in (None, ["default"])]
    axes += ["hflip"] * args.hflip
    if axes:
        raise ValueError(f"--grid fixes the norms and the axes itself; drop --{', --'.join(axes)}.")
    out = args.out or Path(f"outputs/{study.name}")
    rows = study_runs(study, out, recipe, _overrides(args), args.cells)
    if args.shard is not None:
        rows = rows[args.shard[0] :: args.shard[1]]  # of every run, done or not: the shards stay disjoint
    todo = [row for row in rows if not row[4]]
    print(f"{study.name}: {len(study.cells)} cells, {len(rows)} runs, {len(rows) - len(todo)} recorded under {out}, "
          f"{len(todo)} to run.")  # fmt: skip
    if args.dry_run or args.report_only:
        for cell, _, overrides, r, done in rows if args.dry_run else ():
            print(f"  {'done' if done else 'todo'}  {cell.name:<16} {r.norm:<10} seed {r.seed}  {' '.join(overrides)}")
        if args.report_only:
            for cell in study.cells:
                if (out / cell.name / "runs").is_dir():
                    print(f"\n== {cell.name}")
                    render(out / cell.name)
            page = write_study_report(study, args.record or out / "records.jsonl", args.grid.parent)
            print(f"\nThe study's report (every cell, from the records): {page}, {page.with_suffix('.png')}")
        return 0
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    progress = _Progress(len(todo))
    try:
        for i, (cell, folder, overrides, r, _) in enumerate(todo, 1):
            record = {"settings": settings(recipe, overrides), "machine": machine(), "study": study.name,
                      "cell": cell.name}  # fmt: skip
            result = _train_claimed(progress, i, r, folder, recipe, overrides, record)
            if result is not None:
                append_record(args.record or out / "records.jsonl", result)
    finally:
        progress.close()
    return 0


def _train_claimed(progress: _Progress, index: int, r: Run, out: Path, recipe: Path, overrides: list[str],
                   record: dict[str, Any]) -> dict[str, Any] | None:  # fmt: skip
    """:func:`train_one` under the run's claim; None when another process holds the run or has finished it since
    this process planned its runs (see ``claim.py``)."""
    with claim_run(r.folder(out)) as mine:
        if not mine or read_result(r.result_file(out)) is not None:
            progress.skip(r, index, "another process is training it" if not mine else "another process finished it")
            return None
        progress.start(r, index)
        start = time.perf_counter()
        result = train_one(r, out, recipe, overrides, record)
        progress.finish(time.perf_counter() - start, result)
        return result


def main(argv: list[str] | None = None) -> int:
    """``python -m derf_zoo.commands.benchmark fmnist ...``: the same command without the ``derf-zoo`` script."""
    parser = argparse.ArgumentParser(prog="python -m derf_zoo.commands.benchmark")
    add_parser(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["benchmark", *(sys.argv[1:] if argv is None else argv)])
    return parsed.run(parsed)
