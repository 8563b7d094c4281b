"""A tiny DiT Diffusion task after one training step and its checkpoint file (what ``derf-zoo fit`` writes), for the
tests of checkpoint reading and sampling."""

from pathlib import Path

import torch

TINY_DIT = {"hidden_size": 16, "depth": 1, "num_heads": 2, "num_classes": 3, "input_size": 4}


def one_step_checkpoint(path: Path):
    """``(task, path)``: a seeded ``Diffusion("dit_nano_derf")`` of :data:`TINY_DIT` trained one step, saved at
    ``path``."""
    import lightning as L

    from derf_zoo.tasks.diffusion import Diffusion

    torch.manual_seed(0)
    task = Diffusion("dit_nano_derf", model_args=TINY_DIT)
    data = torch.utils.data.TensorDataset(torch.rand(4, 1, 4, 4) * 2 - 1, torch.tensor([0, 1, 2, 0]))
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")  # fmt: skip
    trainer.fit(task, torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)
    return task, path
