"""Drawing class-conditional samples from a DiT: the core of ``derf-zoo sample`` and the sampling callbacks.

:func:`load_dit` gets the network (a Diffusion checkpoint, a Hub folder or released weights) and
:func:`check_sampling` validates what to draw from it. :func:`sample_model_space` runs the reverse process (DDPM or
DDIM, classifier-free guidance) from seeded noise, :func:`draw` turns its output into uint8 images (decoding latents
through a Stable Diffusion VAE for a latent DiT) and :func:`grid_image` lays them out as one picture. Nothing here
touches the global RNG: every batch draws from its own ``torch.Generator`` seeded ``seed + i``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

__all__ = ["DEFAULT_STEPS", "LATENT_CHANNELS", "PIXEL_CHANNELS", "SAMPLERS", "check_sampling", "check_vae",
           "decode_latents", "draw", "grid_image", "is_latent", "load_dit", "sample_model_space"]

SAMPLERS = ("ddpm", "ddim")
#: Channels of a pixel-space DiT (grey, RGB) and of a latent DiT (the Stable Diffusion VAE's latent channels).
PIXEL_CHANNELS, LATENT_CHANNELS = (1, 3), 4
DEFAULT_STEPS = {"ddpm": 250, "ddim": 50}


def is_latent(model: nn.Module) -> bool:
    """Whether ``model`` is a latent DiT: it has the SD VAE's 4 latent channels (a pixel model has 1 or 3).

    The channel count decides because it is what the network was built with; a ``pretrained_cfg`` saying
    ``"space": "latent"`` (the ImageNet DiTs) agrees with it, one saying otherwise does not override it.
    """
    return getattr(model, "in_channels", None) == LATENT_CHANNELS


def check_vae(model: nn.Module, vae: str | nn.Module | None) -> None:
    """ValueError unless a latent DiT has a VAE with its latent channels and a pixel DiT has none.

    Called by ``derf-zoo sample`` and the sampling callbacks alike, so the messages name both spellings of the
    argument.
    """
    if is_latent(model):
        if vae is None:
            trained_on = (getattr(model, "pretrained_cfg", None) or {}).get("vae") or "stabilityai/sd-vae-ft-ema"
            raise ValueError(f"This is a latent DiT ({model.in_channels} channels: Stable Diffusion VAE latents); its "
                             f"samples need a decoder: set the vae argument (`--vae` on the command line) to "
                             f"{trained_on} (a Hub id) or to a folder holding an AutoencoderKL saved with "
                             "save_pretrained.")  # fmt: skip
        if not isinstance(vae, str) and vae.config.latent_channels != model.in_channels:
            raise ValueError(f"The VAE has {vae.config.latent_channels} latent channels, the DiT "
                             f"{model.in_channels}: they were not trained together.")  # fmt: skip
    elif vae is not None:
        raise ValueError(f"The vae argument (`--vae` on the command line) is for latent DiTs ({LATENT_CHANNELS} "
                         f"channels); this model works in pixel space ({model.in_channels} channel(s)) and has "
                         "nothing to decode: drop the vae argument.")  # fmt: skip


@torch.no_grad()
def decode_latents(vae: nn.Module, latents: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Scaled SD-VAE latents (N, 4, h, w) -> uint8 images (N, 3, 8h, 8w), ``batch_size`` latents per decoder call.

    Follows DiT's ``sample_ddp.py`` (facebookresearch/DiT): ``vae.decode(latents / 0.18215).sample`` in [-1, 1],
    then ``torch.clamp(127.5 * x + 128.0, 0, 255)`` cast to uint8 (a cast truncates: round half up of 127.5 (x + 1)).
    """
    from derf_zoo.data.latents import SD_VAE_SCALE

    if batch_size < 1:
        raise ValueError(f"batch_size (latents per decoder call) must be >= 1, got {batch_size}.")
    param = next(vae.parameters())
    out = []
    for z in latents.split(batch_size):
        x = vae.decode(z.to(param.device, param.dtype) / SD_VAE_SCALE).sample
        out.append(torch.clamp(127.5 * x.float() + 128.0, 0, 255).to("cpu", torch.uint8))
    return torch.cat(out)


@torch.no_grad()
def sample_model_space(model: nn.Module, labels: torch.Tensor, *, cfg_scale: float = 1.0, sampler: str = "ddpm",
                       steps: int = 250, seed: int = 0, batch_size: int = 256,
                       device: str = "cpu") -> Iterator[torch.Tensor]:  # fmt: skip
    """The raw samples (pixels in [-1, 1], or scaled latents) for ``labels``, one float batch at a time on
    ``device``; batch ``i`` draws from the generator seeded ``seed + i``."""
    from derf_zoo.diffusion import ClassifierFreeGuidance, create_diffusion

    respacing = f"ddim{steps}" if sampler == "ddim" else str(steps)
    diffusion = create_diffusion(respacing, learn_sigma=getattr(model, "learn_sigma", True))
    model = model.to(device).eval()
    guided = ClassifierFreeGuidance(model, cfg_scale)
    for i, y in enumerate(labels.split(batch_size)):
        y = y.to(device)
        shape = (len(y), model.in_channels, model.input_size, model.input_size)
        generator = torch.Generator(device).manual_seed(seed + i)
        yield diffusion.sample_loop(guided, shape, method=sampler, model_kwargs={"y": y}, generator=generator)


def draw(model: nn.Module, labels: torch.Tensor, *, cfg_scale: float = 1.0, sampler: str = "ddpm", steps: int = 250,
         seed: int = 0, batch_size: int = 256, device: str = "cpu", vae: nn.Module | None = None,
         decode_batch_size: int = 32) -> torch.Tensor:  # fmt: skip
    """Samples for ``labels`` as uint8 (N, C, H, W); batch ``i`` draws from the generator seeded ``seed + i``.

    A latent DiT's samples are decoded by ``vae`` (required for it, refused for a pixel DiT) batch by batch, so
    only uint8 images are kept: (N, 3, 8 x input_size, 8 x input_size).
    """
    from derf_zoo._validate import check_int
    from derf_zoo.data.generation import to_pixels

    check_int("decode_batch_size", decode_batch_size, 1)
    check_vae(model, vae)
    if vae is not None:
        vae = vae.to(device).eval()
    out = []
    for x in sample_model_space(model, labels, cfg_scale=cfg_scale, sampler=sampler, steps=steps, seed=seed,
                                batch_size=batch_size, device=device):  # fmt: skip
        if vae is not None:
            out.append(decode_latents(vae, x, decode_batch_size))
        else:
            out.append((to_pixels(x.float().cpu()) * 255).round().to(torch.uint8))
    return torch.cat(out)


def grid_image(images: torch.Tensor, rows: int, min_cell: int = 32) -> np.ndarray:
    """uint8 (N, C, H, W) class-major -> one (H', W', 3) picture: ``rows`` rows, a 1-px white border per cell,
    small images enlarged (nearest) to at least ``min_cell`` pixels."""
    n, c, h, w = images.shape
    scale = max(1, -(-min_cell // max(h, w)))
    x = images.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    x = torch.nn.functional.pad(x, (1, 1, 1, 1), value=255)
    x = x.expand(-1, 3, -1, -1) if c == 1 else x
    cols = n // rows
    side_h, side_w = x.shape[-2:]
    return x.reshape(rows, cols, 3, side_h, side_w).permute(0, 3, 1, 4, 2).reshape(rows * side_h, cols * side_w,
                                                                                  3).numpy()  # fmt: skip


def load_dit(source: str, weights: str | None = None) -> nn.Module:
    """The DiT in eval mode from a Diffusion-task checkpoint file, a Hub folder, or a released ``arch.tag``.

    Args:
        source: a ``.ckpt`` of the ``Diffusion`` task (read weights-only, its checksum verified), a folder written by
            ``save_pretrained`` / ``derf-zoo export``, or a registered name with released weights.
        weights: of a checkpoint: ``"ema"``, ``"raw"`` or None (EMA when the run averaged its weights).

    Raises:
        ValueError: a checkpoint of another task, or a name with no released weights. CorruptCheckpointError: a
            checkpoint whose bytes do not match its checksum.
    """
    from pathlib import Path

    from derf_zoo.models import create_model, list_models

    path = Path(source)
    if path.is_file():
        from derf_zoo.tasks.checkpoint import read_checkpoint
        from derf_zoo.tasks.diffusion import Diffusion

        ckpt = read_checkpoint(path)
        task = ckpt.task_class()
        if not issubclass(task, Diffusion):
            raise ValueError(f"{path} is a checkpoint of {task.__name__}, not of the Diffusion task.")
        return ckpt.build_network(weights)[0]
    if path.is_dir():
        from derf_zoo.models import from_pretrained

        return from_pretrained(path)
    released = list_models(pretrained=True)
    if source not in released and ("/" in source or path.suffix == ".ckpt") and not path.exists():
        raise ValueError(f"{source}: no such checkpoint file or Hub folder.")
    if source in released:
        return create_model(source, pretrained=True).eval()
    raise ValueError(f"{source!r} is neither a checkpoint file, a Hub folder, nor a released weight "
                     f"(released: {', '.join(released)}).")  # fmt: skip


def check_sampling(model: nn.Module, classes: list[int] | None, per_class: int, cfg_scale: float, sampler: str,
                   steps: int | None) -> tuple[list[int], int]:  # fmt: skip
    """Validated (classes, steps) for drawing ``per_class`` samples of ``classes`` from ``model``.

    Args:
        model: the network to sample (a class-conditional DiT, pixel or latent).
        classes: class labels, or None for every class.
        per_class: samples per class, >= 1.
        cfg_scale: classifier-free guidance scale, finite and >= 1 (1: none; > 1 needs a null class).
        sampler: one of :data:`SAMPLERS`.
        steps: sampling steps in 1..1000, or None for the sampler's default (:data:`DEFAULT_STEPS`).

    Raises:
        ValueError: naming the bad argument, its value and the valid choices.
    """
    import math

    from derf_zoo._validate import check_choice, check_int

    check_choice("sampler", sampler, SAMPLERS)
    if not (math.isfinite(cfg_scale) and cfg_scale >= 1.0):  # inf turns every guided sample into NaN
        raise ValueError(f"cfg_scale must be a finite number >= 1 (1 = no guidance), got {cfg_scale}.")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is None or not hasattr(model, "in_channels"):
        raise ValueError(f"{type(model).__name__} is not a class-conditional DiT.")
    if model.in_channels not in (*PIXEL_CHANNELS, LATENT_CHANNELS):
        raise ValueError(f"The model has {model.in_channels} input channels: DiT sampling draws pixel-space DiTs "
                         f"(1 or 3 channels) and latent DiTs on Stable Diffusion VAE latents ({LATENT_CHANNELS}).")
    if cfg_scale > 1 and not model.y_embedder.has_null_class:
        raise ValueError("cfg_scale > 1 needs a null class: this DiT was built with class_dropout_prob=0.")
    classes = list(range(num_classes)) if classes is None else list(classes)
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"Class label(s) {bad} out of range: this model has classes 0..{num_classes - 1}.")
    check_int("per_class", per_class, 1)
    steps = DEFAULT_STEPS[sampler] if steps is None else steps
    check_int("steps", steps, 1, 1000, why="the training process has 1000")
    return classes, steps
