"""Lightning callbacks: the run's checkpoint, norm statistics, the evaluation-mode training loss, DiT sample grids and
FID."""

from derf_zoo.callbacks.checkpoint import LatestCheckpoint
from derf_zoo.callbacks.eval_train_loss import EvalModeTrainLoss, evaluation_mode_loss
from derf_zoo.callbacks.fid import FID
from derf_zoo.callbacks.history import MetricHistory
from derf_zoo.callbacks.norm_stats import NormStats
from derf_zoo.callbacks.sample_grid import SampleGrid

__all__ = ["FID", "EvalModeTrainLoss", "LatestCheckpoint", "MetricHistory", "NormStats", "SampleGrid",
           "evaluation_mode_loss"]
