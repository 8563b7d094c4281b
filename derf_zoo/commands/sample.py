"""``derf-zoo sample``: a grid of class-conditional samples from a DiT, and an ``.npz`` for FID suites.

The DiT comes from a Lightning checkpoint of the ``Diffusion`` task (``.../last.ckpt``, read with
``weights_only``), a Hub folder (``save_pretrained`` / ``derf-zoo export``), or a registered ``arch.tag`` with
released weights. Sampling is the paper's: DDPM (default 250 steps) or DDIM, classifier-free guidance
``--cfg-scale`` (1 = none).

Pixel-space models (1 or 3 channels) give their samples directly. Latent DiTs (4 channels: the paper's, trained on
Stable Diffusion VAE latents x 0.18215) need ``--vae`` (a Hub id such as ``stabilityai/sd-vae-ft-ema`` or a local
``AutoencoderKL`` folder, loaded as ``derf-zoo extract-latents`` loads it): each sampling batch is decoded as DiT's
``sample_ddp.py`` does, ``vae.decode(latents / 0.18215).sample`` then ``clamp(127.5 x + 128, 0, 255)`` cast to
uint8, ``--decode-batch-size`` latents at a time (the decoder at 256 px needs far more memory than the DiT). A
pixel model refuses ``--vae`` (it has nothing to decode: a VAE there is a mistake, not a no-op).

Writes ``--out`` (a PNG grid: one row per class) and the ``.npz`` beside it (same stem): ``arr_0`` the samples as
uint8 (N, H, W, 3) (grey images repeated to 3 channels), ``arr_1`` their labels: the layout of ADM's
``image_sample.py``, which the ADM/DiT evaluation suite reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from derf_zoo.commands._help import examples
from derf_zoo.diffusion.sampling import check_sampling, check_vae, draw, grid_image, load_dit

#: the library's argument names, as this command's flags (its errors are shown in the command's words)
FLAGS = {"cfg_scale": "--cfg-scale", "per_class": "--per-class", "batch_size": "--batch-size",
         "decode_batch_size": "--decode-batch-size", "weights='ema'": "--weights ema", "weights='raw'": "--weights raw"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw a sample grid (PNG) and an .npz of samples from a DiT",
                       **examples("derf-zoo sample dit_nano_derf.digits --out grid.png --classes 0 1 2",
                                  "derf-zoo sample CKPT --out s.png --per-class 50 --steps 250 --vae sd-vae"))
    p.add_argument("model", help="a Diffusion-task checkpoint (.ckpt), a Hub folder, or a registered arch.tag "
                                 "with released weights")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, help="PNG to write; the .npz goes beside it (same stem)")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="class labels (default: every class)")
    p.add_argument("--per-class", type=int, default=8, help="samples per class (default 8)")
    p.add_argument("--cfg-scale", type=float, default=1.0, help="classifier-free guidance scale, >= 1 (1: none)")
    p.add_argument("--sampler", default="ddpm", help="ddpm (default) or ddim")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: 250 DDPM, 50 DDIM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256, help="samples drawn at once")
    p.add_argument("--vae", default=None, help="latent DiTs (4 channels) only, and required for them: the diffusers "
                   "AutoencoderKL decoding the latents, a Hub id (e.g. stabilityai/sd-vae-ft-ema) or a local folder")
    p.add_argument("--decode-batch-size", type=int, default=32, help="latents decoded at once by the VAE (default 32)")
    p.add_argument("--weights", choices=["ema", "raw"], default=None, help="of a checkpoint: EMA or raw weights "
                   "(default: EMA when the run averaged them)")  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    out = args.out if args.out.suffix.lower() == ".png" else args.out.with_name(args.out.name + ".png")
    npz = out.with_suffix(".npz")
    existing = [str(p) for p in (out, npz) if p.exists()]
    if existing and not args.overwrite:
        raise SystemExit(f"derf-zoo sample: {', '.join(existing)} already exists; pass --overwrite to replace it.")
    from derf_zoo.commands._checks import as_flags, check_device, check_writable
    from derf_zoo.tasks.checkpoint import CorruptCheckpointError

    try:
        check_writable(out, npz)  # before minutes of sampling: a bad --out fails now
        check_device(args.device)
        model = load_dit(args.model, args.weights)
        classes, steps = check_sampling(model, args.classes, args.per_class, args.cfg_scale, args.sampler, args.steps)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
        if args.decode_batch_size < 1:
            raise ValueError(f"--decode-batch-size must be >= 1, got {args.decode_batch_size}.")
        check_vae(model, args.vae)  # before loading anything: a missing or superfluous --vae fails at once
        vae = None
        if args.vae is not None:
            from derf_zoo.diffusion.vae import load_vae

            vae = load_vae(args.vae, args.device)
        labels = torch.tensor(classes).repeat_interleave(args.per_class)
        images = draw(model, labels, cfg_scale=args.cfg_scale, sampler=args.sampler, steps=steps, seed=args.seed,
                      batch_size=args.batch_size, device=args.device, vae=vae,
                      decode_batch_size=args.decode_batch_size)  # fmt: skip
    except (ValueError, FileNotFoundError, CorruptCheckpointError) as err:
        raise SystemExit(f"derf-zoo sample: {as_flags(str(err), FLAGS)}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid_image(images, rows=len(classes))).save(out)
        nhwc = images.permute(0, 2, 3, 1)
        nhwc = nhwc.expand(-1, -1, -1, 3) if nhwc.shape[-1] == 1 else nhwc
        np.savez(npz, nhwc.contiguous().numpy(), labels.numpy())
    except OSError as err:  # the folder changed while sampling (disk full, removed): say so, not a traceback
        raise SystemExit(f"derf-zoo sample: writing {out} failed ({err}).") from None
    decoded = f"; decoded by {args.vae}" if args.vae is not None else ""
    print(f"wrote {out} and {npz} ({len(labels)} samples of {images.shape[-2]}x{images.shape[-1]} px: classes "
          f"{classes}, {args.per_class} each; {args.sampler} {steps} steps, cfg {args.cfg_scale:g}, seed {args.seed}"
          f"{decoded})")  # fmt: skip
    return 0
