"""Per-epoch values of logged metrics, for plots (the loggers have them too, but spread over rows)."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L

__all__ = ["MetricHistory"]


class MetricHistory(L.Callback):
    """Collect ``trainer.callback_metrics[key]`` once per epoch into ``self.curves[key]``.

    Keys starting with ``train/`` are read at the end of each training epoch, the others at the end of each
    validation epoch (never during the sanity check). A key not logged in an epoch is skipped for that epoch.

    Args:
        keys: the metric names, e.g. ``("train/loss_epoch", "val/acc1")``.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.curves: dict[str, list[float]] = {key: [] for key in keys}

    def _take(self, trainer: L.Trainer, train: bool) -> None:
        for key, values in self.curves.items():
            value = trainer.callback_metrics.get(key)
            if value is not None and key.startswith("train/") == train:
                values.append(float(value))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After every epoch-end hook: a task that logs its epoch metrics in its own on_validation_epoch_end (the LM
        # tasks reduce token sums there) runs after the callbacks' on_validation_epoch_end, which saw last epoch's.
        if not trainer.sanity_checking:
            self._take(trainer, train=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take(trainer, train=True)
