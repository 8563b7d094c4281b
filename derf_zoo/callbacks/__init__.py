"""Lightning callbacks: the run's checkpoint, norm statistics and the evaluation-mode training loss."""

from derf_zoo.callbacks.checkpoint import LatestCheckpoint
from derf_zoo.callbacks.eval_train_loss import EvalModeTrainLoss, evaluation_mode_loss
from derf_zoo.callbacks.history import MetricHistory
from derf_zoo.callbacks.norm_stats import NormStats

__all__ = ["EvalModeTrainLoss", "LatestCheckpoint", "MetricHistory", "NormStats", "evaluation_mode_loss"]
