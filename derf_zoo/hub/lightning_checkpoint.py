"""Moved: reading a task's Lightning checkpoint lives in :mod:`derf_zoo.tasks.checkpoint` (the task layer: it knows
the task's keys, its checksum and how to rebuild the network). These names are re-exported so that imports written
before keep working; importing them loads the task layer."""

from derf_zoo.tasks.checkpoint import load_lightning_checkpoint, network_weights, optimizer_classes, recorded_metrics

__all__ = ["load_lightning_checkpoint", "network_weights", "optimizer_classes", "recorded_metrics"]
