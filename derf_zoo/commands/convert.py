"""``derf-zoo convert``: a pretrained LayerNorm/RMSNorm model -> Derf (or another point-wise norm), fitted, as a Hub
folder. Parses, calls :func:`derf_zoo.tasks.convert.convert_pretrained`, prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from derf_zoo.commands._help import examples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert a pretrained LayerNorm/RMSNorm model to Derf with a fitted conversion",
        description="Copy every weight of SOURCE into the same architecture with --to at its norm sites, fit each new "
                    "point-wise norm to SOURCE's norm on calibration batches (forward order, one pass), and write a "
                    "Hub folder whose card gives the fit errors. Distil it afterwards with a recipe's teacher:.",
        **examples("derf-zoo convert vit_mini_ln.fmnist --to derf --calib recipes/vit/vit_mini_fmnist.yaml "
                   "--out outputs/vit_mini_derf_fitted",
                   "derf-zoo convert vit_nano_ln.digits --exclude final --calib recipes/vit/vit_nano_ln_digits.yaml "
                   "--out outputs/vit_nano_derf_fitted"))  # fmt: skip
    p.add_argument("source", help="released name (vit_mini_ln.fmnist), derf_zoo Hub folder or repo id, or a .ckpt of "
                                  "`derf-zoo fit`")  # fmt: skip
    p.add_argument("--to", default="derf", help="norm spec of the result (default: derf)")
    p.add_argument("--calib", required=True, type=Path, help="a recipe whose training data calibrates the fit")
    p.add_argument("--batches", type=int, default=8, help="calibration batches (default: 8)")
    p.add_argument("--exclude", nargs="*", default=(), metavar="SITE",
                   help="norm sites that keep the source's norm (attn, mlp, final, ...)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="Hub folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it already holds files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.tasks.convert import convert_pretrained

    try:
        _, report, folder = convert_pretrained(args.source, args.to, calib=args.calib, batches=args.batches,
                                               exclude=args.exclude, out=args.out, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise SystemExit(f"derf-zoo convert: {err}") from None
    print(report)
    print(f"wrote {folder}; distil it with a recipe whose task has teacher: {args.source}")
    return 0
