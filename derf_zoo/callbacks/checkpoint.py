"""The checkpoint callback every ``derf-zoo fit`` run gets (the recipes' ``checkpoint:`` section)."""

from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


class LatestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with ``save_last=True`` by default, so ``--ckpt_path last`` resumes.

    One difference: a ``fast_dev_run`` writes nothing. Lightning 2.6's ``on_train_end`` saves ``last.ckpt``
    without the fast-dev-run check its other hooks make, which for a ViT-L recipe is a 4.8 GB file (weights,
    AdamW moments and EMA) written by a run that was only meant to prove the recipe works.
    """

    def __init__(self, *args, save_last: bool | str | None = True, **kwargs) -> None:
        super().__init__(*args, save_last=save_last, **kwargs)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run:
            return
        super().on_train_end(trainer, pl_module)
