"""The ``derf-zoo`` command (also ``python -m derf_zoo``).

``derf-zoo fit|validate|test|predict -c recipe.yaml`` run Lightning's CLI; the other subcommands
(``derf-zoo demo``, ``derf-zoo models``, ...) are derf_zoo's own tools. ``derf-zoo --help`` lists them all, and
every command's ``--help`` ends with examples. A fit stopped by SIGTERM exits with status 143; a checkpoint
folder it cannot use (held by another fit, holding another run) or a corrupted checkpoint exits with 1.

An error in what the user gave (a derf_zoo error, a ``ValueError``, a missing or unwritable file, a non-finite loss)
is printed as ``derf-zoo COMMAND: error: ...`` and exits 1; ``--debug`` (anywhere on the line, or
``DERF_ZOO_DEBUG=1``) shows its traceback instead. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from derf_zoo import __version__
from derf_zoo.commands import (
    bench,
    benchmark,
    convert,
    demo,
    extract_latents,
    hub,
    models,
    norms,
    prepare_text,
    release,
    sample,
    sweep_alpha,
)
from derf_zoo.commands._help import examples
from derf_zoo.training import LIGHTNING_EXAMPLES, lightning_cli

_OWN_COMMANDS = (demo, models, norms, convert, prepare_text, sweep_alpha, hub, sample, extract_latents, benchmark,
                 bench, release)
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_LIGHTNING_HELP = {
    "fit": "train a recipe (Lightning's CLI; -c RECIPE.yaml, --ckpt_path last resumes)",
    "validate": "evaluate a checkpoint on a recipe's validation split (Lightning's CLI)",
    "test": "evaluate a checkpoint on a recipe's test split (Lightning's CLI)",
    "predict": "run a checkpoint over a recipe's predict data (Lightning's CLI)",
}
DEBUG_ENV = "DERF_ZOO_DEBUG"  # set by --debug, so DDP's worker processes (which rerun the command) inherit it


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (ValueError covers WeightsMismatchError, AudioError, ...), not a bug."""
    from lightning.pytorch.utilities.exceptions import MisconfigurationException  # e.g. accelerator gpu, no GPU

    from derf_zoo.callbacks.checkpoint import RunFolderError
    from derf_zoo.tasks.checksum import CorruptCheckpointError

    return (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
            FloatingPointError, RunFolderError, CorruptCheckpointError, MisconfigurationException)  # fmt: skip


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="derf-zoo",
        description="derf_zoo: normalization-free Transformers (Derf, DyT, ...) with Lightning recipes. "
        "`derf-zoo COMMAND --help` describes a command.",
        **examples(
            "derf-zoo demo vit                                      # Derf against LayerNorm on real digits",
            "derf-zoo fit -c recipes/vit/vit_nano_derf_digits.yaml  # train a recipe",
            "derf-zoo fit -c recipes/vit/vit_base_derf_in1k.yaml --print_config",
            "derf-zoo models --pretrained                           # released weights",
        ),
    )
    parser.add_argument("--version", action="version", version=f"derf_zoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error in the input "
                        "(anywhere on the line; also for fit/validate/test/predict)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Listed for --help only: main() hands these to Lightning's CLI before this parser sees them.
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=_LIGHTNING_HELP[name], add_help=False, **examples(LIGHTNING_EXAMPLES[name]))
    for module in _OWN_COMMANDS:
        module.add_parser(sub)
    return parser


def main(args: Sequence[str] | None = None) -> int:
    """Entry point; ``args`` defaults to ``sys.argv[1:]`` (tests pass a list)."""
    from_command_line = args is None
    args = list(sys.argv[1:] if args is None else args)
    before = os.environ.get(DEBUG_ENV)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"
        if from_command_line:  # Lightning's CLI reads sys.argv itself
            sys.argv = [sys.argv[0], *args]
    command = next((a for a in args if not a.startswith("-")), "")
    try:
        return _run(args, from_command_line)
    except _user_errors() as err:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"derf-zoo{' ' + command if command else ''}: error: {err}", file=sys.stderr)
        return 1
    finally:  # main() called from Python (tests, scripts) leaves the environment as it found it
        if before is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = before


def _run(args: list[str], from_command_line: bool) -> int:
    if args and args[0] in LIGHTNING_COMMANDS:
        lightning_cli(None if from_command_line else args)  # Lightning reads sys.argv itself
        return 0
    parser = _own_parser()
    parsed = parser.parse_args(args)
    if parsed.command is None:
        parser.print_help()
        return 0
    return parsed.run(parsed)


if __name__ == "__main__":
    sys.exit(main())
