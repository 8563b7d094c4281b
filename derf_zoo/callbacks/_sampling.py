"""What the sampling callbacks (:class:`SampleGrid`, :class:`FID`) share: argument checks, when to run, which
weights to draw from, and a sandbox that leaves the training state (RNG, train mode, gradients) as it was."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from torch import nn

from derf_zoo._validate import check_choice, check_int, is_real
from derf_zoo.diffusion.sampling import DEFAULT_STEPS, SAMPLERS, is_latent


def check_sampling_args(owner: str, every_n_epochs: int, sampler: str, steps: int | None, cfg_scale: float) -> int:
    """The number of steps (``steps`` or the sampler's default); ValueError naming the bad value otherwise."""
    check_int("every_n_epochs", every_n_epochs, 1, owner=owner)
    check_choice(f"{owner} sampler", sampler, SAMPLERS)
    steps = DEFAULT_STEPS[sampler] if steps is None else steps
    check_int("steps", steps, 1, 1000, owner=owner, why="the training process has 1000")
    if not (is_real(cfg_scale) and math.isfinite(cfg_scale) and cfg_scale >= 1.0):
        raise ValueError(f"{owner}: cfg_scale must be a finite number >= 1 (1 = no guidance), got {cfg_scale!r}.")
    return steps


def due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether this epoch's end should draw: every ``every_n_epochs``-th epoch, never in a fast dev run."""
    if trainer.fast_dev_run or trainer.sanity_checking:
        return False
    return (trainer.current_epoch + 1) % every_n_epochs == 0


def sampling_network(trainer: L.Trainer, pl_module: L.LightningModule, use_average: bool) -> nn.Module:
    """The DiT to draw from: the averaged (EMA) copy when a ``WeightAveraging`` callback keeps one and
    ``use_average``, else the trained network.

    Lightning's ``EMAWeightAveraging`` swaps the averaged weights in only for the validation loop; at the end of a
    training epoch the module holds the raw weights, so the average is read from the callback's ``AveragedModel``
    (a copy of the whole LightningModule: its ``.model`` is the network).
    """
    network = pl_module.model
    if use_average:
        for callback in trainer.callbacks:
            average = getattr(callback, "_average_model", None) if isinstance(callback, WeightAveraging) else None
            if average is not None:
                return average.module.model
    return network


@contextlib.contextmanager
def sandbox(*modules: nn.Module) -> Iterator[None]:
    """No gradients, ``modules`` in eval mode, and the global RNG (CPU and CUDA) forked: afterwards every module is
    back in its train/eval state and the training run draws the same random numbers as without this block."""
    modes = [[(m, m.training) for m in module.modules()] for module in modules]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for module in modules:
                module.eval()
            yield
    finally:
        for pairs in modes:
            for m, training in pairs:
                m.training = training


def resolve_vae(owner: str, network: nn.Module, vae: str | nn.Module | None, device: torch.device) -> nn.Module | None:
    """The ``AutoencoderKL`` for a latent DiT (a module, a local folder or a Hub id), None for a pixel DiT.

    Raises:
        ValueError: a latent DiT without ``vae``, or a pixel DiT given one.
    """
    if is_latent(network):
        if vae is None:
            raise ValueError(f"{owner}: the model is a latent DiT ({network.in_channels} channels); its samples need a "
                             "decoder: pass vae=stabilityai/sd-vae-ft-ema (a Hub id), a local AutoencoderKL folder, "
                             "or the module.")  # fmt: skip
        if isinstance(vae, str):
            from derf_zoo.diffusion.vae import load_vae

            return load_vae(vae, device)
        return vae.to(device).eval()
    if vae is not None:
        raise ValueError(f"{owner}: vae is for latent DiTs (4 channels); this model works in pixel space "
                         f"({network.in_channels} channel(s)) and has nothing to decode: drop vae.")  # fmt: skip
    return None


def device_of(module: nn.Module) -> Any:
    return next(module.parameters()).device
