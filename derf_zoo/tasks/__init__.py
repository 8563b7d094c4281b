"""LightningModules per domain, and the optimizer helpers they share."""

from derf_zoo.tasks.classification import ImageClassification
from derf_zoo.tasks.optim import param_groups
from derf_zoo.tasks.schedules import Schedule

__all__ = ["ImageClassification", "Schedule", "param_groups"]
