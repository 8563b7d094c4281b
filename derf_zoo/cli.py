"""The ``derf-zoo`` command (also ``python -m derf_zoo``).

``derf-zoo fit|validate|test|predict -c recipe.yaml`` run Lightning's CLI; the other subcommands
(``derf-zoo norms``, ...) are derf_zoo's own tools.
"""

from __future__ import annotations

import argparse
import contextvars
import sys
from collections.abc import Sequence

from derf_zoo import __version__
from derf_zoo.commands import bench, demo, hub, norms

_OWN_COMMANDS = (bench, demo, hub, norms)
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


def _cli_class():
    from lightning.pytorch.cli import LightningCLI

    from derf_zoo.callbacks import LatestCheckpoint

    class DerfZooCLI(LightningCLI):
        """LightningCLI with a checkpoint callback that is always there (``checkpoint:`` in a recipe), so a run
        can be resumed with ``--ckpt_path last`` and its directory set with ``--checkpoint.dirpath``."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(LatestCheckpoint, "checkpoint")

    return DerfZooCLI


def lightning_cli(args: Sequence[str] | None = None, run: bool = True):
    """Lightning's CLI over every derf_zoo task and datamodule (``derf-zoo fit -c recipe.yaml``).

    Args:
        args: the command line (``["fit", "-c", "recipe.yaml", ...]``); None reads ``sys.argv``.
        run: run the subcommand; with False (and no subcommand in ``args``) only build trainer, model and data.
    """
    import warnings

    import lightning as L

    import derf_zoo.callbacks
    import derf_zoo.data
    import derf_zoo.tasks  # noqa: F401  (imported so recipes can name these classes)

    if args is not None:  # an explicit command line (demo, tests, scripts): Lightning need not warn about sys.argv
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
    # In a context of its own: jsonargparse leaves its last parser in a context variable, and through the
    # parser the trained model, which would otherwise stay alive until the next CLI call (a ViT-L: gigabytes).
    return contextvars.copy_context().run(
        _cli_class(),
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # tasks take their optimizer and schedule from the recipe themselves
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        args=list(args) if args is not None else None,
        run=run,
    )


def main(args: Sequence[str] | None = None) -> int:
    """Entry point; ``args`` defaults to ``sys.argv[1:]`` (tests pass a list)."""
    from_command_line = args is None
    args = list(sys.argv[1:] if args is None else args)
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
