"""``derf-zoo models``: the model table, generated from the registry and the manifest, never written by hand.

One row per entry point (family, parameters, default input, the recipe that trains it) and, for each released
weight of it, the tag, the metrics its model card states, the sha256 prefix the manifest pins and a link to the
card. ``--markdown`` prints the tables the docs show; ``--update`` / ``--check`` refresh or verify the generated
regions of Markdown files, which sit between

    <!-- derf-zoo models --markdown --family vit --cards ../cards -->
    ...
    <!-- /derf-zoo models -->

(the arguments in the opening marker are this command's filters). The table is
:mod:`derf_zoo.models._table`'s; this command parses its flags, calls it and prints. The docs build
(``scripts/docs_hooks.py``) fills the same regions, so the site never drifts from the code; the tests run ``--check``
so the committed pages don't either.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from derf_zoo.commands._help import examples
from derf_zoo.models._table import markdown_tables, model_rows, text_table, update_files

__all__: list[str] = []


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="the model table: every entry point, its size, input, recipe and released weights",
        **examples("derf-zoo models 'vit_*'", "derf-zoo models --family dit --markdown",
                   "derf-zoo models --check docs/models.md docs/families/*.md   # what the tests run"),
    )  # fmt: skip
    p.add_argument("pattern", nargs="?", default="*", help="glob over entry-point names (default: all)")
    p.add_argument("--family", default=None, help="only this family (derf_zoo.models.list_families())")
    p.add_argument("--pretrained", action="store_true", help="only entry points with released weights")
    p.add_argument("--markdown", action="store_true", help="Markdown tables (what the docs show)")
    p.add_argument("--cards", default=None, metavar="PREFIX",
                   help="link embedded cards as PREFIX/<name>.md (the docs site's card pages); default: the card's "
                        "path in the package")  # fmt: skip
    p.add_argument("--update", nargs="+", type=Path, metavar="FILE.md", default=None,
                   help="rewrite the generated regions of these Markdown files")
    p.add_argument("--check", nargs="+", type=Path, metavar="FILE.md", default=None,
                   help="exit 1 if a generated region of these files is out of date")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.update or args.check:
        paths = args.update or args.check
        stale = update_files(paths, check=bool(args.check))
        for path in stale:
            verb = "out of date" if args.check else "updated"
            print(f"{path}: {verb}", file=sys.stderr if args.check else sys.stdout)
        if args.check and stale:
            print("run: derf-zoo models --update " + " ".join(str(p) for p in paths), file=sys.stderr)
            return 1
        return 0
    rows = model_rows(args.pattern, family=args.family, pretrained=args.pretrained)
    print(markdown_tables(rows, cards=args.cards) if args.markdown else text_table(rows))
    return 0


# ---- how each column is computed ---------------------------------------------------------------------------
