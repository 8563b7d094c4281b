"""A tiny DiT fit on the embedded digits, for the sampling callbacks' tests."""

import lightning as L
import pytest
import torch

from derf_zoo.data.generation import DigitsGenerationDataModule
from derf_zoo.tasks import Diffusion

TINY = {"depth": 1, "hidden_size": 32, "num_heads": 2}


def fit(tmp_path, callbacks, epochs=1, logger=False, datamodule=None, **trainer_args):
    """(task, trainer) after ``epochs`` epochs of 2 batches of 8 digits (8x8, 10 classes), seeded."""
    torch.manual_seed(0)
    task = Diffusion("dit_nano_ln", model_args=TINY)
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, accelerator="cpu",
                        logger=logger, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path, callbacks=callbacks,
                        **trainer_args)  # fmt: skip
    trainer.fit(task, datamodule=datamodule or DigitsGenerationDataModule(batch_size=8))
    return task, trainer


@pytest.fixture
def fit_dit(tmp_path):
    """``fit_dit(callbacks, epochs=1, logger=False, **trainer_args)`` -> (task, trainer)."""
    return lambda callbacks, **kwargs: fit(tmp_path, callbacks, **kwargs)
