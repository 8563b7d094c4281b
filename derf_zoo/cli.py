"""The ``derf-zoo`` command (also ``python -m derf_zoo``).

``derf-zoo fit|validate|test|predict -c recipe.yaml`` run Lightning's CLI; the other subcommands
(``derf-zoo norms``, ...) are derf_zoo's own tools. A fit stopped by SIGTERM exits with status 143; a checkpoint
folder it cannot use (held by another fit, holding another run) or a corrupted checkpoint exits with 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from derf_zoo import __version__
from derf_zoo.commands import bench, benchmark, demo, extract_latents, hub, norms, prepare_text, sample, sweep_alpha
from derf_zoo.training import lightning_cli

_OWN_COMMANDS = (bench, benchmark, demo, extract_latents, hub, norms, prepare_text, sample, sweep_alpha)
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _own_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="derf-zoo",
        description="derf_zoo: normalization-free Transformers (Derf, DyT, ...) with Lightning recipes.",
    )
    parser.add_argument("--version", action="version", version=f"derf_zoo {__version__}")
    parser.epilog = (
        "Training: derf-zoo {fit,validate,test,predict} -c RECIPE.yaml [--print_config] [--trainer.KEY=VALUE ...] "
        "(Lightning's CLI; see recipes/)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _OWN_COMMANDS:
        module.add_parser(sub)
    return parser


def main(args: Sequence[str] | None = None) -> int:
    """Entry point; ``args`` defaults to ``sys.argv[1:]`` (tests pass a list)."""
    from_command_line = args is None
    args = list(sys.argv[1:] if args is None else args)
    if args and args[0] in LIGHTNING_COMMANDS:
        from derf_zoo.callbacks.checkpoint import RunFolderError
        from derf_zoo.tasks.checksum import CorruptCheckpointError

        try:
            lightning_cli(None if from_command_line else args)  # Lightning reads sys.argv itself
        except (RunFolderError, CorruptCheckpointError) as err:  # the user's to fix: the message, not a traceback
            print(f"derf-zoo {args[0]}: error: {err}", file=sys.stderr)
            return 1
        return 0
    parser = _own_parser()
    parsed = parser.parse_args(args)
    if parsed.command is None:
        parser.print_help()
        return 0
    return parsed.run(parsed)


if __name__ == "__main__":
    sys.exit(main())
