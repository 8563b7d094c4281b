"""What every ``derf-zoo`` subcommand's help ends with: examples to copy."""

from __future__ import annotations

import argparse
from typing import Any


def examples(*lines: str) -> dict[str, Any]:
    """Keyword arguments for ``add_parser`` that end the command's ``--help`` with these example lines.

    Example:
        ``sub.add_parser("norms", help="...", **examples("derf-zoo norms --plot norms.png"))``
    """
    return {
        "epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
