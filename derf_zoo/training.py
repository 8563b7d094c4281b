"""Lightning's CLI over every derf_zoo task and datamodule: what ``derf-zoo fit`` runs.

It lives below ``derf_zoo.cli`` and ``derf_zoo.commands`` so that both (the console script, the demo, the
benchmark) run recipes through this one code path, and neither imports the other.
"""

from __future__ import annotations

import contextvars
import signal
from collections.abc import Sequence

__all__ = ["SIGTERM_EXIT_STATUS", "fit", "lightning_cli"]

#: what ``derf-zoo fit`` exits with when SIGTERM (a cluster's pre-emption) stopped it: 143, as a process killed by
#: the signal, so that ``derf-zoo fit ... && derf-zoo export ...`` never exports a half-trained model.
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM


def _cli_class():
    from jsonargparse import ActionYesNo
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.utilities import rank_zero_info

    from derf_zoo.callbacks import LatestCheckpoint
    from derf_zoo.callbacks.checkpoint import RunFolderError
    from derf_zoo.data.base import check_loader_args

    class DerfZooCLI(LightningCLI):
        """LightningCLI with a checkpoint callback that is always there (``checkpoint:`` in a recipe), so a run
        can be resumed with ``--ckpt_path last`` and its directory set with ``--checkpoint.dirpath``; and
        ``--overwrite`` to start a fresh fit in a folder that holds an old run's checkpoints."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(LatestCheckpoint, "checkpoint")
            parser.add_argument("--overwrite", action=ActionYesNo, nargs="?", default=False,
                                help="fit: start a fresh run in a checkpoint folder that holds an old run's "
                                     "checkpoints, moving them aside into replaced-<date>T<time>/")  # fmt: skip
            parser.link_arguments("overwrite", "checkpoint.overwrite")

        def before_instantiate_classes(self) -> None:
            # A bad batch size is a recipe error: say so here, not as a traceback from deep inside a DataLoader.
            config = self.config.get(self.subcommand) if self.subcommand else self.config
            data = config.get("data") if config is not None else None
            init_args = data.get("init_args") if data is not None else None
            if init_args is not None:
                owner = f"data ({str(data.get('class_path', '')).rpartition('.')[2]})"
                try:
                    check_loader_args(init_args.get("batch_size", 1), init_args.get("num_workers", 0), owner)
                except ValueError as err:
                    self.parser.error(str(err))

        def before_fit(self) -> None:
            # Lightning treats a missing last checkpoint as "start fresh" with a warning that scrolls by; a
            # resume that silently restarts a long run from step 0 must be asked for (resume_if_present).
            if self.config_init["fit"].get("ckpt_path") != "last":
                return
            callback = next((c for c in self.trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint)), None)
            if callback is None or callback.has_last_checkpoint(self.trainer):
                return
            if not callback.resume_if_present:
                raise RunFolderError(
                    f"--ckpt_path last: there is no last checkpoint in {callback.dirpath}, so there is nothing to "
                    "resume. Drop --ckpt_path to start a fresh run, check --checkpoint.dirpath, or set "
                    "checkpoint.resume_if_present: true in the recipe (the pre-emption pattern: the same command "
                    "starts the run and resumes it after every requeue)."
                )
            self.config_init["fit"]["ckpt_path"] = None
            rank_zero_info(f"--ckpt_path last: no last checkpoint in {callback.dirpath} yet; resume_if_present: "
                           "starting a fresh run.")  # fmt: skip

    return DerfZooCLI


#: The example each Lightning subcommand's ``--help`` ends with (and ``derf-zoo --help`` lists).
LIGHTNING_EXAMPLES = {
    "fit": "derf-zoo fit -c recipes/vit/vit_nano_derf_digits.yaml [--ckpt_path last] [--trainer.max_epochs 5]",
    "validate": "derf-zoo validate -c recipes/vit/vit_nano_derf_digits.yaml --ckpt_path RUN/checkpoints/last.ckpt",
    "test": "derf-zoo test -c recipes/vit/vit_mini_fmnist.yaml --ckpt_path RUN/checkpoints/last.ckpt",
    "predict": "derf-zoo predict -c RECIPE.yaml --ckpt_path RUN/checkpoints/last.ckpt",
}


def lightning_cli(args: Sequence[str] | None = None, run: bool = True):
    """Lightning's CLI over every derf_zoo task and datamodule (``derf-zoo fit -c recipe.yaml``).

    Args:
        args: the command line (``["fit", "-c", "recipe.yaml", ...]``); None reads ``sys.argv``.
        run: run the subcommand; with False (and no subcommand in ``args``) only build trainer, model and data.

    Raises:
        SIGTERMException: (a ``SystemExit`` with code :data:`SIGTERM_EXIT_STATUS`) when a fit received SIGTERM;
            the checkpoint callback has saved ``last.ckpt`` by then.
        RunFolderError: the checkpoint folder is held by another fit, holds another run, or has no last
            checkpoint for ``--ckpt_path last``.
    """
    import warnings

    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import derf_zoo.callbacks
    import derf_zoo.data
    import derf_zoo.tasks  # (imported so recipes can name these classes)

    for name in derf_zoo.data.__all__:  # the data package loads lazily: load every DataModule for the CLI's subclasses
        getattr(derf_zoo.data, name)

    if args is not None:  # an explicit command line (demo, tests, scripts): Lightning need not warn about sys.argv
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
    # In a context of its own: jsonargparse leaves its last parser in a context variable, and through the
    # parser the trained model, which would otherwise stay alive until the next CLI call (a ViT-L: gigabytes).
    try:
        cli = contextvars.copy_context().run(
            _cli_class(),
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,  # tasks take their optimizer and schedule from the recipe themselves
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            parser_kwargs={name: {"epilog": f"example: {line}"} for name, line in LIGHTNING_EXAMPLES.items()},
            args=list(args) if args is not None else None,
            run=run,
        )
    except SIGTERMException as err:  # Lightning stopped the fit on SIGTERM (pre-emption); it exits 0 on its own
        raise SIGTERMException(SIGTERM_EXIT_STATUS) from err
    if run and cli.subcommand == "fit" and cli.trainer.received_sigterm:  # the signal came after the last batch
        raise SIGTERMException(SIGTERM_EXIT_STATUS)
    return cli


def fit(cli) -> None:
    """Run ``cli.trainer.fit`` on a CLI built with ``run=False`` (the demo, the benchmark), stopping as ``derf-zoo
    fit`` does: a fit that SIGTERM stopped raises :class:`SIGTERMException` with :data:`SIGTERM_EXIT_STATUS`, so
    the caller exits 143 instead of reporting a half-trained model as finished.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except SIGTERMException as err:
        raise SIGTERMException(SIGTERM_EXIT_STATUS) from err
    if cli.trainer.received_sigterm:
        raise SIGTERMException(SIGTERM_EXIT_STATUS)
