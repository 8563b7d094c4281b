"""The recipes (one YAML per result row) ship inside the package; ``recipes/`` at the repo root links here."""

from __future__ import annotations

from pathlib import Path

__all__ = ["conversions", "fine_tunes", "list_recipes", "recipe_path", "trained_from_scratch"]

RECIPES_DIR = Path(__file__).resolve().parent


def list_recipes(pattern: str = "**/*.yaml") -> list[Path]:
    """Every recipe file, sorted (``list_recipes("vit/*_digits.yaml")``)."""
    return sorted(RECIPES_DIR.glob(pattern))


def conversions(recipes: list[Path] | None = None) -> list[Path]:
    """The recipes that start from another model's weights (``*_from_*``: a teacher, a fitted conversion)."""
    return [p for p in (list_recipes() if recipes is None else recipes) if "_from_" in p.stem]


def fine_tunes(recipes: list[Path] | None = None) -> list[Path]:
    """The recipes that fine-tune pretrained weights on other data (``*_finetune*``: a new head, layer decay)."""
    return [p for p in (list_recipes() if recipes is None else recipes) if "_finetune" in p.stem]


def trained_from_scratch(recipes: list[Path]) -> list[Path]:
    """``recipes`` without the conversions and the fine-tunes: the paper's rows and the demo's, which train from
    random weights."""
    return [p for p in recipes if "_from_" not in p.stem and "_finetune" not in p.stem]


def recipe_path(name: str) -> Path:
    """The path of a recipe by its name relative to the recipes folder (``"vit/vit_nano_derf_digits.yaml"``)."""
    path = RECIPES_DIR / name
    if not path.is_file():
        from derf_zoo.norms.registry import unknown_name_error

        raise unknown_name_error("recipe", name, [str(p.relative_to(RECIPES_DIR)) for p in list_recipes()])
    return path
