"""What several release parts share: the training options and facts read back from a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

__all__ = ["check_exports_free", "check_note", "recipe_epochs", "trained_steps", "training_arguments"]


def _positive_int(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of epochs >= 1, got {text!r}")
    return value


def training_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """``--out`` (the training runs' folder, default ``out``) and ``--epochs`` (a quick check, not a release)."""
    parser.add_argument("--out", type=Path, default=Path(out), help=f"where the training runs go (default: {out})")
    parser.add_argument("--epochs", type=_positive_int, default=None, help="override the recipes' epoch budget "
                        "(a quick check of the pipeline; the cards say so; not for a release)")  # fmt: skip


def recipe_epochs(recipe: str, override: int | None) -> int:
    """The epochs a run of ``recipe`` (``"gpt2/...yaml"``) trained: ``override`` or the recipe's ``max_epochs``."""
    from derf_zoo.recipes import recipe_path

    if override is not None:
        return override
    return int(yaml.safe_load(recipe_path(recipe).read_text())["trainer"]["max_epochs"])


def trained_steps(checkpoint: Path) -> int:
    """The optimizer steps a run took, as its last checkpoint records them (checksum verified)."""
    from derf_zoo.tasks.checkpoint import read_checkpoint

    return int(read_checkpoint(checkpoint).global_step)


def check_note(epochs: int | None) -> str:
    """What a card says when ``--epochs`` shortened the runs: they are a check, not the release."""
    return "" if epochs is None else f" [a pipeline check: --epochs {epochs} overrode the recipe's budget]"


def check_exports_free(export_dir: Path, names: list[str], overwrite: bool) -> None:
    """Refuse, before any training, export folders (``export_dir/NAME``) an earlier release left, unless
    ``overwrite``: the export would otherwise fail only after minutes of training."""
    taken = [n for n in names if (export_dir / n).is_dir() and any((export_dir / n).iterdir())]
    if taken and not overwrite:
        raise FileExistsError(f"{export_dir} already holds exports of {', '.join(taken)}; nothing was trained. Pass "
                              "--overwrite to replace them, or another --out.")  # fmt: skip
