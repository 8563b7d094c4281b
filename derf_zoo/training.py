"""Lightning's CLI over every derf_zoo task and datamodule: what ``derf-zoo fit`` runs.

It lives below ``derf_zoo.cli`` and ``derf_zoo.commands`` so that both (the console script, the demo, the
benchmark) run recipes through this one code path, and neither imports the other.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence

__all__ = ["lightning_cli"]


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
