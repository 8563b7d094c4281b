"""``derf-zoo sweep-alpha``: the Derf paper's per-site alpha grid over one recipe, resumable.

The paper grid-searched the GPT-2 alphas (attention {0.5, 1, 2, 4} x other {0.1, 0.3, 0.5, 1}, PAPER.md §3.5) and
did not report the winner. This command runs that grid over a recipe: each point trains in its own folder
(``OUT/attn<a>_other<o>``) with ``attn_alpha = a`` and ``mlp_alpha = final_alpha = o``; a finished point
(``result.json``) is skipped and an interrupted one resumes from its ``last.ckpt``, so the same command restarts a
stopped sweep. ``--dry-run`` prints one ``derf-zoo fit`` command per point instead (for a cluster's job array: each
is resumable on its own). The results go to ``OUT/grid.md``, best validation loss first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from derf_zoo.commands._help import examples

#: The paper's grid (PAPER.md §3.5, Tab. 21).
ATTN_ALPHAS = (0.5, 1.0, 2.0, 4.0)
OTHER_ALPHAS = (0.1, 0.3, 0.5, 1.0)
RESULT = "result.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-alpha", help="the paper's per-site alpha grid over a recipe (resumable; one folder per "
                       "point)", **examples(
                           "derf-zoo sweep-alpha -c recipes/gpt2/gpt2_124m_derf_openwebtext.yaml --out outputs/grid",
                           "derf-zoo sweep-alpha -c recipes/gpt2/gpt2_124m_derf_openwebtext.yaml --out outputs/grid "
                           "--dry-run",
                           "derf-zoo sweep-alpha -c recipes/gpt2/gpt2_nano_derf_shakespeare.yaml --out outputs/nano "
                           "--attn 1 2 --other 0.3 -- --trainer.max_epochs=2"))
    p.add_argument("-c", "--config", required=True, type=Path, help="the recipe (its model takes attn_alpha, "
                   "mlp_alpha, final_alpha: the GPT-2 family)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="the sweep's folder (one subfolder per point)")
    p.add_argument("--attn", type=float, nargs="+", default=list(ATTN_ALPHAS), help="attention (ln_1) alphas")
    p.add_argument("--other", type=float, nargs="+", default=list(OTHER_ALPHAS), help="ln_2 and ln_f alphas")
    p.add_argument("--dry-run", action="store_true", help="print the per-point commands instead of running them")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="after --: more `derf-zoo fit` arguments for every "
                   "point (e.g. -- --trainer.max_steps=1000)")  # fmt: skip
    p.set_defaults(run=run)


def point_folder(out: Path, attn: float, other: float) -> Path:
    return out / f"attn{attn:g}_other{other:g}"


def point_args(recipe: Path, folder: Path, attn: float, other: float, overrides: list[str]) -> list[str]:
    """The ``derf-zoo fit`` arguments of one grid point (resumes from the folder's last checkpoint if any)."""
    prefix = "--model.init_args.model_args."
    return ["fit", "-c", str(recipe), f"--trainer.default_root_dir={folder}",
            f"--checkpoint.dirpath={folder / 'checkpoints'}", "--ckpt_path=last", "--checkpoint.resume_if_present=true",
            f"{prefix}attn_alpha={attn}", f"{prefix}mlp_alpha={other}", f"{prefix}final_alpha={other}",
            *overrides]  # fmt: skip


def run_point(args: list[str], folder: Path, attn: float, other: float) -> dict[str, Any]:
    """Fit (or resume) one point, then validate its final weights; the result is written to ``result.json``."""
    from derf_zoo.training import lightning_cli

    cli = lightning_cli(args)  # exactly `derf-zoo fit ...`: resumes from last.ckpt when the folder holds one
    metrics = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    result = {"attn_alpha": attn, "other_alpha": other, "val_loss": float(metrics["val/loss"]),
              "steps": int(cli.trainer.global_step)}  # fmt: skip
    (folder / RESULT).write_text(json.dumps(result) + "\n")
    return result


def write_table(out: Path, results: list[dict[str, Any]], recipe: Path) -> Path:
    rows = sorted(results, key=lambda r: r["val_loss"])
    lines = [f"# Alpha grid over {recipe}", "",
             "attn = ln_1 (attention pre-norm) alpha; other = ln_2 and ln_f alpha; val loss in nats per token, "
             "best first.", "", "| attn | other | val loss | steps |", "|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['attn_alpha']:g} | {r['other_alpha']:g} | {r['val_loss']:.4f} | {r['steps']} |" for r in rows]
    path = out / "grid.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    overrides = [a for a in args.overrides if a != "--"]
    if not args.config.is_file():
        print(f"derf-zoo sweep-alpha: error: no recipe {args.config}", file=sys.stderr)
        return 1
    points = list(itertools.product(args.attn, args.other))
    results = []
    for attn, other in points:
        folder = point_folder(args.out, attn, other)
        fit_args = point_args(args.config, folder, attn, other, overrides)
        if args.dry_run:
            print("derf-zoo " + shlex.join(fit_args))
            continue
        if (folder / RESULT).is_file():
            results.append(json.loads((folder / RESULT).read_text()))
            print(f"attn {attn:g}, other {other:g}: done earlier (val loss {results[-1]['val_loss']:.4f})")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        print(f"attn {attn:g}, other {other:g}: training in {folder}")
        results.append(run_point(fit_args, folder, attn, other))
        print(f"attn {attn:g}, other {other:g}: val loss {results[-1]['val_loss']:.4f}")
    if not args.dry_run:
        print(f"Grid: {write_table(args.out, results, args.config)}")
    return 0
