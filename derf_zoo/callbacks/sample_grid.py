"""A picture of the DiT's samples every few epochs, from the same seeded noise each time, so epochs compare."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from derf_zoo._validate import check_int
from derf_zoo.callbacks._sampling import check_sampling_args, device_of, due, resolve_vae, sampling_network, sandbox
from derf_zoo.diffusion.sampling import draw, grid_image

__all__ = ["DIT_GRID_CLASSES", "SampleGrid"]

#: The classes of DiT's ``sample.py`` grid (facebookresearch/DiT), drawn for models with more than 16 classes.
DIT_GRID_CLASSES = (207, 360, 387, 974, 88, 979, 417, 279)


class SampleGrid(L.Callback):
    """Draw a class-conditional sample grid (PNG, one row per class) at the end of every ``every_n_epochs``-th
    training epoch (after its validation), rank 0 only.

    Every grid starts from the same noise (``seed``), so the rows of successive epochs show the same draws as the
    model trains. The picture goes to ``<trainer.log_dir>/samples/epoch=NNN.png`` (``log_dir`` is the logger's
    version folder, or ``default_root_dir`` without a logger; an existing file is kept and the new one gets a
    ``-vN`` suffix) and to the logger when it takes images (TensorBoard's ``add_image``, or a ``log_image`` method
    as W&B's); a CSV logger only gets the file.

    Weights: with an ``EMAWeightAveraging`` callback (the DiT recipes) the grid shows the averaged weights, what the
    checkpoint's ``state_dict`` and the paper's samples are; ``use_average=False`` shows the raw ones. Sampling runs
    without gradients, in eval mode, inside a forked RNG: the training run continues with the random numbers it
    would have drawn without the callback, and train mode is restored. Skipped in ``fast_dev_run``.

    Args:
        every_n_epochs: draw after every n-th epoch.
        classes: class labels, one row each (default: every class for up to 16 classes, else DiT's grid classes).
        per_class: samples per class (columns).
        sampler: ``"ddim"`` (default: fast) or ``"ddpm"``.
        steps: sampling steps (default: 50 DDIM, 250 DDPM).
        cfg_scale: classifier-free guidance scale, >= 1 (1 = none).
        seed: seed of the noise.
        vae: for latent DiTs: the ``AutoencoderKL`` (module, local folder or Hub id) that decodes the samples.
        use_average: draw from the weight average when a ``WeightAveraging`` callback keeps one.
    """

    def __init__(self, every_n_epochs: int = 1, classes: list[int] | None = None, per_class: int = 8,
                 sampler: str = "ddim", steps: int | None = None, cfg_scale: float = 1.0, seed: int = 0,
                 vae: str | nn.Module | None = None, use_average: bool = True) -> None:  # fmt: skip
        self.steps = check_sampling_args("SampleGrid", every_n_epochs, sampler, steps, cfg_scale)
        check_int("per_class", per_class, 1, owner="SampleGrid")
        if classes is not None and not classes:
            raise ValueError("SampleGrid: classes is empty; give class labels or None (the default choice).")
        self.every_n_epochs = every_n_epochs
        self.classes = None if classes is None else [int(c) for c in classes]
        self.per_class = per_class
        self.sampler = sampler
        self.cfg_scale = float(cfg_scale)
        self.seed = int(seed)
        self.vae = vae
        self.use_average = use_average
        self.last_path: Path | None = None

    def grid_classes(self, network: nn.Module) -> list[int]:
        """The rows: ``classes`` checked against the model, or the default choice."""
        num_classes = network.num_classes
        if self.classes is None:
            return list(range(num_classes)) if num_classes <= 16 else [c for c in DIT_GRID_CLASSES if c < num_classes]
        bad = [c for c in self.classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"SampleGrid: class label(s) {bad} out of range: the model has classes "
                             f"0..{num_classes - 1}.")  # fmt: skip
        return self.classes

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        network = pl_module.model
        if self.cfg_scale > 1 and not network.y_embedder.has_null_class:
            raise ValueError("SampleGrid: cfg_scale > 1 needs a null class: this DiT was built with "
                             "class_dropout_prob=0.")  # fmt: skip
        self.grid_classes(network)
        if not trainer.fast_dev_run and trainer.is_global_zero:
            self.vae = resolve_vae("SampleGrid", network, self.vae, device_of(network))

    def images(self, network: nn.Module) -> torch.Tensor:
        """The grid's samples, uint8 (rows * per_class, C, H, W), class-major (no RNG or mode side effects)."""
        labels = torch.tensor(self.grid_classes(network)).repeat_interleave(self.per_class)
        device = device_of(network)
        with sandbox(network):
            return draw(network, labels, cfg_scale=self.cfg_scale, sampler=self.sampler, steps=self.steps,
                        seed=self.seed, batch_size=len(labels), device=str(device), vae=self.vae)  # fmt: skip

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not due(trainer, self.every_n_epochs) or not trainer.is_global_zero:
            return
        from PIL import Image

        network = sampling_network(trainer, pl_module, self.use_average)
        picture = grid_image(self.images(network), rows=len(self.grid_classes(network)))
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        path, version = folder / f"epoch={trainer.current_epoch:03d}.png", 1
        while path.exists():  # never overwrite (a resumed run writing into the same folder)
            path, version = folder / f"epoch={trainer.current_epoch:03d}-v{version}.png", version + 1
        Image.fromarray(picture).save(path)
        self.last_path = path
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("samples", picture, trainer.global_step, dataformats="HWC")
            elif hasattr(logger, "log_image"):  # W&B and others with an image API
                logger.log_image(key="samples", images=[picture], step=trainer.global_step)
