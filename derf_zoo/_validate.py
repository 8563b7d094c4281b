"""Argument checks every layer of derf_zoo shares: one wording for "bad value, here are the valid ones".

A leaf module (it imports nothing from derf_zoo), so norms, layers, data, diffusion, tasks and models can all use
it without an import cycle. Each check raises a ``ValueError`` that names the argument, the bad value and what
would have been valid; a caller adds who it is (``owner="DigitsDataModule"``) and, where the bound is not obvious,
why (``why="the digits are 8x8"``).

Python's ``bool`` is an ``int`` (``True + True == 2``), so every check refuses a bool where a number is asked for:
``batch_size: true`` in a recipe is a mistake, not a batch of one.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["check_choice", "check_int", "check_positive", "is_int", "is_real", "unknown_name_error"]


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (``int``, ``float``, numpy scalars; not a ``bool``), finite or not."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _prefix(owner: str | None) -> str:
    return f"{owner}: " if owner else ""


def _got(value: Any, *, show_type: bool) -> str:
    # The type only where it is the problem: "got 2.5 (float)", "got True (bool)", but "got 0".
    return f"got {value!r} ({type(value).__name__})" if show_type else f"got {value!r}"


def check_int(
    name: str,
    value: Any,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    owner: str | None = None,
    why: str | None = None,
    allow_none: bool = False,
) -> Any:
    """Return ``value`` if it is an int (not a bool) in ``[minimum, maximum]``, else raise a ValueError naming it.

    Args:
        name: The argument's name, as the user wrote it (``"batch_size"``).
        value: What was given.
        minimum: The smallest valid value (None: no lower bound).
        maximum: The largest valid value (None: no upper bound).
        owner: Who checks, put in front of the message (``"DigitsDataModule"``).
        why: Why the bound is what it is, put after it in brackets (``"one image per class"``).
        allow_none: None is valid too (and returned as is).

    Raises:
        ValueError: ``"{owner}: {name} must be an integer >= {minimum} ({why}), got {value!r}."``.
    """
    if value is None and allow_none:
        return None
    integer = is_int(value)
    if integer and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return value
    if minimum is not None and maximum is not None:
        bound = f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        bound = f" >= {minimum}"
    elif maximum is not None:
        bound = f" <= {maximum}"
    else:
        bound = ""
    reason = f" ({why})" if why else ""
    none = " or None" if allow_none else ""
    raise ValueError(
        f"{_prefix(owner)}{name} must be an integer{bound}{reason}{none}, {_got(value, show_type=not integer)}."
    )


def check_positive(name: str, value: Any, *, owner: str | None = None, why: str | None = None) -> float:
    """Return ``value`` as a float if it is a finite real number > 0 (an init std, a scale), else raise by name.

    Raises:
        ValueError: ``"{owner}: {name} must be a finite number > 0 ({why}), got {value!r}."``.
    """
    real = is_real(value)
    if real and math.isfinite(value) and value > 0:
        return float(value)
    reason = f" ({why})" if why else ""
    raise ValueError(f"{_prefix(owner)}{name} must be a finite number > 0{reason}, {_got(value, show_type=not real)}.")


def unknown_name_error(kind: str, name: object, valid: Iterable[Any]) -> ValueError:
    """A ValueError that names the bad value, the closest valid one and every valid choice (sorted).

    ``raise unknown_name_error("norm", "dert", ["derf", "dyt"])`` ->
    ``Unknown norm 'dert'. Did you mean 'derf'? Valid choices: derf, dyt.``
    """
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Valid choices: {', '.join(valid)}.")


def check_choice(kind: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :func:`unknown_name_error` (``kind`` names it)."""
    choices = tuple(choices)
    if value not in choices:
        raise unknown_name_error(kind, value, choices)
    return value
