"""``derf-zoo demo``: a small real end-to-end run of every family on embedded data, one part per family.

Each part trains its family with Derf and with LayerNorm (others on request) through the family's recipes and
returns a :class:`~derf_zoo.commands.demo.part.PartResult`; the command prints each part's table and ends with
one summary row per family: the metric, Derf against LayerNorm, the noise and a plain verdict.
``derf-zoo demo vit`` runs one part. A new family adds a module here and a line to :data:`PARTS`.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from derf_zoo.commands._help import examples
from derf_zoo.commands.demo import dit, dna, gpt2, speech, vit
from derf_zoo.commands.demo.part import PartResult, print_summary

#: The demo's parts, in the order ``derf-zoo demo`` runs them.
PARTS = {"vit": vit, "dit": dit, "wav2vec2": speech, "dna": dna, "gpt2": gpt2}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs >= 1, got {value}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train every family with Derf and LayerNorm on embedded real data and compare",
                       **examples("derf-zoo demo", "derf-zoo demo vit --norms derf dyt ln",
                                  "derf-zoo demo dna --out /tmp/demo"))
    p.add_argument("parts", nargs="*", metavar="PART", help=f"which parts to run: {', '.join(PARTS)} (default: all)")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="where logs, checkpoints and plots go")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override every recipe's epoch budget")
    p.add_argument("--norms", nargs="+", default=None, help="norms to compare (default: derf ln; the ViT part also "
                   f"takes {', '.join(vit.NORMS)})")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="plain logs instead of progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Lightning's start-up chatter (accelerator lines, tips) would bury the runs; warnings still show.
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning internals vs torch 2.14, not ours
    names = args.parts or list(PARTS)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise SystemExit(f"derf-zoo demo: unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}.")
    results: list[PartResult] = []
    for name in names:
        result = PARTS[name].run_part(args.out / name, epochs=args.epochs, norms=args.norms,
                                      progress=not args.no_progress)  # fmt: skip
        results.extend(result if isinstance(result, list) else [result])  # a part may compare several models
    print_summary(results)
    return 0
