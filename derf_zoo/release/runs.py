"""One recipe run, as the demo and the release command run it: the one ``train_one`` scaffolding."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["RecipeRun", "one_thread", "train_recipe"]


@dataclass
class RecipeRun:
    """A finished recipe run.

    Attributes:
        cli: the LightningCLI object (``cli.model``, ``cli.datamodule``, ``cli.trainer`` after the fit).
        seconds: wall time of the fit.
        cpu_seconds: CPU time of this process during the fit.
        checkpoint: the last checkpoint the run wrote.
        curves: per-epoch values of the metrics asked for (``train/...`` at each training epoch's end, the others
            at each validation's end).
    """

    cli: Any
    seconds: float
    cpu_seconds: float
    checkpoint: Path
    curves: dict[str, list[float]] = field(default_factory=dict)


def train_recipe(recipe: str | Path, run_dir: Path, *, epochs: int | None = None, progress: bool = True,
                 extra_args: Sequence[str] = (), curves: Sequence[str] = ()) -> RecipeRun:  # fmt: skip
    """Fit ``recipe`` unchanged except for where it writes: checkpoints in ``run_dir/checkpoints``, CSV logs in
    ``run_dir``. A rerun into the same ``run_dir`` replaces the last one (its checkpoints move aside, see
    :class:`~derf_zoo.callbacks.checkpoint.LatestCheckpoint`).

    Args:
        recipe: the recipe YAML (a path; :func:`derf_zoo.recipes.recipe_path` resolves a packaged one).
        run_dir: the run's folder.
        epochs: overrides the recipe's ``trainer.max_epochs`` (None: the recipe's budget).
        progress: Lightning's progress bars (False: plain logs).
        extra_args: further command-line overrides (``--model.init_args.init_from=...``; tests shrink runs with
            them).
        curves: metric names to record per epoch (:class:`~derf_zoo.callbacks.history.MetricHistory`).

    Returns:
        The finished run.
    """
    from derf_zoo.callbacks.history import MetricHistory
    from derf_zoo.training import fit, lightning_cli

    args = [
        "-c", str(recipe), f"--trainer.default_root_dir={run_dir}", f"--checkpoint.dirpath={run_dir / 'checkpoints'}",
        f"--trainer.enable_progress_bar={str(progress).lower()}", "--trainer.enable_model_summary=false",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger", f"--trainer.logger.save_dir={run_dir}",
        "--overwrite=true", *extra_args,
    ]  # fmt: skip
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    cli = lightning_cli(args, run=False)
    history = MetricHistory(curves)
    if curves:
        cli.trainer.callbacks.append(history)
    start, cpu = time.perf_counter(), time.process_time()
    fit(cli)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return RecipeRun(cli=cli, seconds=seconds, cpu_seconds=cpu_seconds, curves=history.curves,
                     checkpoint=Path(cli.trainer.checkpoint_callback.last_model_path))  # fmt: skip


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting.

    The demo's models are too small to split an operation across cores: on the busy 2-core machine the speech part
    was measured on, an epoch took 0.3 s on one thread and 0.3-10 s on two (threads waiting for a core); the DNA
    part took ~4x the CPU time on two. One thread also makes the runs bit-reproducible, so a rerun matches the
    released weights' cards.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
