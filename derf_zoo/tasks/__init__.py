"""LightningModules per domain on one task contract (:class:`Task`), the optimizer helpers they share, and reading
their checkpoints back (:func:`read_checkpoint`)."""

from derf_zoo.tasks.base import TASK_OPTIONS, MetricSpec, Task, build_network
from derf_zoo.tasks.checkpoint import CorruptCheckpointError, TaskCheckpoint, read_checkpoint
from derf_zoo.tasks.classification import ImageClassification
from derf_zoo.tasks.diffusion import Diffusion
from derf_zoo.tasks.dna_lm import DNALanguageModeling
from derf_zoo.tasks.language_modeling import LanguageModeling
from derf_zoo.tasks.layer_decay import layer_ids
from derf_zoo.tasks.optim import param_groups
from derf_zoo.tasks.schedules import Schedule
from derf_zoo.tasks.sequence_classification import SequenceClassification
from derf_zoo.tasks.speech_pretraining import SpeechPretraining

__all__ = [
    "TASK_OPTIONS",
    "CorruptCheckpointError",
    "DNALanguageModeling",
    "Diffusion",
    "ImageClassification",
    "LanguageModeling",
    "MetricSpec",
    "Schedule",
    "SequenceClassification",
    "SpeechPretraining",
    "Task",
    "TaskCheckpoint",
    "build_network",
    "layer_ids",
    "param_groups",
    "read_checkpoint",
]
