"""Moved: reading a task's Lightning checkpoint is :mod:`derf_zoo.tasks.checkpoint`'s (the task layer: it knows the
task's keys, its checksum and how to rebuild the network). The old names resolve there on first use (PEP 562), so
imports written before keep working while ``derf_zoo.hub`` itself still imports no task module; new code imports
from ``derf_zoo.tasks.checkpoint``."""

from __future__ import annotations

from typing import Any

#: the names that lived here, now in derf_zoo.tasks.checkpoint
_MOVED = ("load_lightning_checkpoint", "network_weights", "optimizer_classes", "recorded_metrics")
__all__ = list(_MOVED)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'derf_zoo.hub.lightning_checkpoint' has no attribute {name!r}")
    from derf_zoo.tasks import checkpoint

    return getattr(checkpoint, name)
