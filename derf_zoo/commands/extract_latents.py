"""``derf-zoo extract-latents``: ImageNet-style class folders -> Stable Diffusion VAE latents in safetensors shards.

The command parses its flags and calls :func:`derf_zoo.data.latent_extraction.extract_latents` (what it writes,
how it resumes and what it refuses are described there); library errors are shown with the flags' names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from derf_zoo.commands._help import examples
from derf_zoo.data.latent_extraction import DEFAULT_VAE, RECORD_NAME, extract_latents

#: the library's argument spellings, as this command's flags
FLAGS = {"skip_invalid=True": "--skip-invalid", "overwrite=True": "--overwrite", "The output folder": "--out",
         "image_size": "--image-size", "shard_size": "--shard-size", "batch_size": "--batch-size"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-latents", help="encode ImageNet-style class folders into SD-VAE latent shards "
                                               "for DiT training (resumable)",
                       **examples("derf-zoo extract-latents /data/imagenet/train --out /data/imagenet_latents/train "
                                  "--flip"))  # fmt: skip
    p.add_argument("images", type=Path, help="a folder of class folders: IMAGES/<class_name>/<image files>")
    p.add_argument("--out", type=Path, required=True, help="folder for the shards (LatentDataModule's root)")
    p.add_argument("--vae", default=DEFAULT_VAE, help=f"diffusers AutoencoderKL: a Hub id or a local folder "
                                                      f"(default {DEFAULT_VAE})")  # fmt: skip
    p.add_argument("--image-size", type=int, default=256, help="center-crop side in pixels, divisible by 8 "
                                                               "(default 256: 32x32x4 latents)")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=4096, help="images per shard (default 4096)")
    p.add_argument("--batch-size", type=int, default=32, help="images encoded at once (default 32)")
    p.add_argument("--mode", default="sample", help="sample (DiT's extract: mean + std * noise) or mean")
    p.add_argument("--flip", action="store_true", help="also store the latents of the flipped images "
                                                       "(latents_flipped, for DiT's random flip)")  # fmt: skip
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored latents' dtype")
    p.add_argument("--seed", type=int, default=0, help="seed of the posterior draws (image i: (seed << 32) + i)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-invalid", action="store_true", help="leave out images that cannot be read (counted and "
                   "listed) instead of stopping at the first")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder holding another extraction "
                   f"(only its shards and {RECORD_NAME} are deleted)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.commands._checks import as_flags, check_device

    try:
        check_device(args.device)  # before loading the VAE
        done = extract_latents(args.images, args.out, vae=args.vae, image_size=args.image_size,
                               shard_size=args.shard_size, batch_size=args.batch_size, mode=args.mode, flip=args.flip,
                               dtype=args.dtype, seed=args.seed, device=args.device, overwrite=args.overwrite,
                               progress=not args.no_progress, skip_invalid=args.skip_invalid)  # fmt: skip
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        raise SystemExit(f"derf-zoo extract-latents: {as_flags(str(err), FLAGS)}") from None
    print(f"{args.out}: {done['shards']} shards of {done['images']} images ({done['written']} written, "
          f"{done['skipped']} already complete). Train with data.class_path derf_zoo.data.LatentDataModule, "
          f"data.init_args.root {args.out}.")  # fmt: skip
    if done["invalid"]:
        shown = "".join(f"\n  {name}" for name in done["invalid"][:20])
        more = f"\n  ... and {len(done['invalid']) - 20} more" if len(done["invalid"]) > 20 else ""
        print(f"left out {len(done['invalid'])} image(s) that cannot be read (--skip-invalid):{shown}{more}")
    return 0
