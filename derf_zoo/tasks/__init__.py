"""LightningModules per domain, and the optimizer helpers they share."""

from derf_zoo.tasks.optim import param_groups

__all__ = ["param_groups"]
