"""ImageNet-style class folders -> Stable Diffusion VAE latents in safetensors shards (``derf-zoo extract-latents``).

DiT trains on VAE latents, not pixels; encoding once here means training never runs the VAE. Each image is
center-cropped and resized to ``image_size`` as DiT's ``train.py`` does (ADM's ``center_crop_arr``: halve with a
box filter while the short side is at least twice the size, bicubic resize of the short side to the size, center
crop), scaled to [-1, 1], encoded with diffusers' ``AutoencoderKL`` (default ``stabilityai/sd-vae-ft-ema``) and
multiplied by 0.18215. Like DiT's ``extract_features.py``, the latent is a draw ``latent_dist.sample()`` (the
posterior's mean plus its standard deviation times Gaussian noise); ``mode="mean"`` keeps the posterior mean.
The noise of image ``i`` (in the sorted listing) comes from its own generator, seeded ``(seed << 32) + i``, so the
values do not depend on the batch or shard size, and a resumed extraction writes what an uninterrupted one would.

The output is the folder :mod:`derf_zoo.data.latents` reads: ``shard_00000.safetensors``, ... with ``latents``
(N, 4, S/8, S/8), ``labels`` (N,) (class folders sorted by name, as torchvision's ImageFolder numbers them) and,
with ``flip=True``, ``latents_flipped`` (the latents of the horizontally flipped images, for DiT's random flip), plus
``extract_latents.json``: what was extracted (input, image list digest, VAE, size, mode, ...) and the classes.

An image that cannot be read (corrupt, truncated, not an image, unreadable) stops the extraction with an error that
names it, or with ``skip_invalid=True`` is left out: counted, listed at the end, and named in its shard's metadata
(``skipped``), so a resume knows the shard is whole; the other images keep their seeds (their index in the listing).
A folder that cannot be listed is named too.

Resumable: run the same extraction again and complete shards are kept; a shard is written to a temporary file and
renamed into place only when whole, so an interrupted run never leaves a partial shard. An output folder that holds
another extraction (other input, VAE or settings) is refused unless ``overwrite=True``, which then deletes only that
extraction's shards and record; a folder without ``extract_latents.json`` is never emptied, and the output folder
may not be, or contain, the image folder. The record is written once the first shard is (a run that fails on its first
images leaves no record of an extraction that does not exist).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from derf_zoo._validate import check_choice, check_int
from derf_zoo.data.images import _IMAGE_EXTENSIONS
from derf_zoo.data.latents import (
    FLIPPED_KEY,
    LABELS_KEY,
    LATENTS_KEY,
    RECORD_NAME,
    SD_VAE_SCALE,
    check_shard,
    shard_name,
)
from derf_zoo.devices import check_device
from derf_zoo.diffusion.vae import DEFAULT_VAE, load_vae  # re-exported: the loader lives with the diffusion code

__all__ = ["DEFAULT_VAE", "MODES", "center_crop_arr", "encode", "extract_latents", "image_generator", "list_images",
           "load_vae"]

MODES = ("sample", "mean")
#: The VAE halves the side three times (block_out_channels of length 4).
VAE_FACTOR = 8


# ---- input ----------------------------------------------------------------------------------------------------


def list_images(root: str | Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names sorted, [(image path, label)] sorted by class then file name) of an ImageNet-style folder.

    Raises:
        FileNotFoundError: ``root`` is missing, or holds no class folder with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist; expected {root}/<class_name>/<image files>.")
    classes = sorted(d.name for d in _listing(root) if d.is_dir())
    items = [(f, label) for label, c in enumerate(classes) for f in sorted(_listing(root / c))
             if f.is_file() and f.suffix.lower() in _IMAGE_EXTENSIONS]  # fmt: skip
    if not items:
        raise FileNotFoundError(f"Image folder {root} has no class folders with images ("
                                f"{', '.join(_IMAGE_EXTENSIONS)}); expected {root}/<class_name>/<image files>.")
    return classes, items


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as err:  # PermissionError, a folder that vanished, an I/O error
        raise FileNotFoundError(f"Cannot list the folder {folder} ({err.strerror or err}); fix its permissions or "
                                "remove it from the image folder.") from None


def center_crop_arr(image: Any, image_size: int) -> np.ndarray:
    """ADM's center crop, as DiT's ``train.py`` uses it: a PIL image -> uint8 (image_size, image_size, 3).

    Follows guided-diffusion's ``image_datasets.center_crop_arr`` (openai/guided-diffusion, MIT).
    """
    from PIL import Image

    while min(*image.size) >= 2 * image_size:  # repeated halving: cheap antialiasing before the bicubic step
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image.convert("RGB"))
    top, left = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return arr[top:top + image_size, left:left + image_size]


class InvalidImageError(ValueError):
    """An image file that cannot be read (corrupt, truncated, not an image, unreadable)."""


def _crop(path: Path, image_size: int) -> np.ndarray:
    """The center crop of one file, or InvalidImageError naming it (PIL's truncation error names no file)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return center_crop_arr(image.convert("RGB"), image_size)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:  # PIL raises all of these
        raise InvalidImageError(f"image {path} cannot be read ({type(err).__name__}: {err})") from err


def _pixels(arrays: list[np.ndarray]) -> Tensor:
    """(N, 3, S, S) in [-1, 1] of center crops: DiT's ToTensor + Normalize(0.5, 0.5)."""
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


# ---- the VAE --------------------------------------------------------------------------------------------------


def image_generator(seed: int, index: int) -> torch.Generator:
    """The generator of image ``index``'s posterior draw(s): one per image, so batching changes nothing."""
    return torch.Generator().manual_seed((seed << 32) + index)


@torch.no_grad()
def encode(vae: torch.nn.Module, pixels: Tensor, mode: str, generators: list[torch.Generator]) -> Tensor:
    """Scaled latents of ``pixels`` in [-1, 1]: a posterior draw (or its mean) times 0.18215.

    The draw is ``mean + std * noise``, what diffusers' ``latent_dist.sample(generator)`` computes, with the noise
    of each image from its own generator (a CPU generator: the same numbers on every device).
    """
    dist = vae.encode(pixels).latent_dist
    latent = dist.mean
    if mode == "sample":
        noise = torch.stack([torch.randn(latent.shape[1:], generator=g) for g in generators])
        latent = latent + dist.std * noise.to(latent.device, latent.dtype)
    return latent * SD_VAE_SCALE


# ---- shards ---------------------------------------------------------------------------------------------------


def shard_path(out: Path, index: int) -> Path:
    return out / shard_name(index)


def _shard_is_complete(path: Path, expected: int, record: dict[str, Any]) -> bool:
    """Whether ``path`` is a whole shard of this extraction with ``expected`` images, less those its metadata says
    were skipped (any doubt: redo it)."""
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("extraction") != record["digest"]:
                return False
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        check_shard(tensors, path)
        skipped = len(json.loads(metadata.get("skipped", "[]")))
    except Exception:  # a truncated or foreign file: it is redone, never trusted
        return False
    latents = tensors[LATENTS_KEY]
    return len(latents) == expected - skipped and tuple(latents.shape[1:]) == tuple(record["latent_shape"]) and (
        (FLIPPED_KEY in tensors) == record["flip"])  # fmt: skip


def _write_shard(path: Path, tensors: dict[str, Tensor], digest: str, skipped: list[str] | None = None) -> None:
    """Write to a hidden temporary file, then rename: a shard exists whole or not at all."""
    from safetensors.torch import save_file

    partial = path.with_name(f".{path.name}.partial")
    metadata = {"extraction": digest, **({"skipped": json.dumps(skipped)} if skipped else {})}
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)


def _record(images: Path, classes: list[str], items: list[tuple[Path, int]], vae: str, image_size: int,
            shard_size: int, mode: str, flip: bool, dtype: str, seed: int,
            latent_shape: tuple) -> dict[str, Any]:  # fmt: skip
    listing = hashlib.sha256("\n".join(f"{p.relative_to(images)}\t{y}" for p, y in items).encode()).hexdigest()
    record = {"images": str(images.resolve()), "num_images": len(items), "image_list_sha256": listing,
              "vae": vae, "scale": SD_VAE_SCALE, "image_size": image_size, "shard_size": shard_size, "mode": mode,
              "flip": flip, "dtype": dtype, "seed": seed, "latent_shape": list(latent_shape)}  # fmt: skip
    record["digest"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    record["classes"] = classes
    return record


def _is_within(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` is ``outer`` or lies below it (paths resolved: links and ``..`` do not hide it)."""
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def _clear_extraction(out: Path) -> None:
    """Remove what an extraction wrote into ``out`` (its shards, partial shards and record), nothing else."""
    for path in [*out.glob("shard_*.safetensors"), *out.glob(".shard_*.safetensors.partial"), out / RECORD_NAME]:
        if path.is_file():
            path.unlink()


def _prepare_out(out: Path, images: Path, record: dict[str, Any], overwrite: bool) -> None:
    """Create ``out``, or keep it for a resume of the same extraction; refuse anything else without overwrite.

    ``overwrite`` replaces only an earlier extraction (a folder with its ``extract_latents.json``): its shards and
    record are deleted, any other file stays. A folder without the record is never emptied (it may be ``~/data``),
    and ``out`` may not be, or hold, the image folder. The record itself is written by the caller, after the first
    shard.
    """
    record_file = out / RECORD_NAME
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"The output folder {out} exists and is not a folder.")
    if _is_within(images, out):
        raise FileExistsError(f"The output folder {out} is or contains the image folder {images}: the shards would mix "
                              "with the images; nothing was written. Choose a folder outside it.")  # fmt: skip
    if out.is_dir() and any(p for p in out.iterdir() if not p.name.endswith(".partial")):
        same = False
        if record_file.is_file():
            try:
                same = json.loads(record_file.read_text()).get("digest") == record["digest"]
            except json.JSONDecodeError:
                same = False
        if not same:
            if not record_file.is_file():
                why = (f"overwrite=True replaces only an extraction folder (one with its {RECORD_NAME}), so it was "
                       "not removed" if overwrite else "nothing was written")  # fmt: skip
                raise FileExistsError(f"The output folder {out} holds other files and no {RECORD_NAME}: it is not an "
                                      f"extraction folder; {why}. Choose an empty or new folder.")  # fmt: skip
            if not overwrite:
                raise FileExistsError(f"The output folder {out} holds another extraction (other images, VAE or "
                                      "settings); nothing was written. Choose another folder or pass overwrite=True to "
                                      "replace it.")
            _clear_extraction(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.partial"):  # left by an interrupted run
        stale.unlink()


def extract_latents(images: str | Path, out: str | Path, *, vae: str | torch.nn.Module = DEFAULT_VAE,
                    image_size: int = 256, shard_size: int = 4096, batch_size: int = 32, mode: str = "sample",
                    flip: bool = False, dtype: str = "float32", seed: int = 0, device: str = "cpu",
                    overwrite: bool = False, progress: bool = True,
                    skip_invalid: bool = False) -> dict[str, Any]:  # fmt: skip
    """Encode every image under ``images`` into latent shards in ``out`` (see the module docstring).

    Args:
        images: ImageNet-style folder ``<class_name>/<image files>``.
        out: shard folder; an interrupted extraction into it resumes.
        vae: a Hub id, a local folder, or an ``AutoencoderKL`` (its name is then recorded as ``"<module>"``).
        image_size: crop side, divisible by 8.
        shard_size / batch_size: images per shard / per encoder call.
        mode: ``"sample"`` (DiT) or ``"mean"``.
        flip: also store the latents of the flipped images.
        dtype: ``"float32"`` or ``"float16"`` storage.
        seed: image ``i`` draws from ``torch.Generator().manual_seed((seed << 32) + i)``.
        device: where the VAE runs.
        overwrite: replace another extraction in ``out`` (its shards and record only; a folder without the record
            is refused).
        progress: show a progress bar.
        skip_invalid: leave out images that cannot be read (listed in ``"invalid"``) instead of stopping.

    Returns:
        ``{"shards": total, "written": newly written, "skipped": already complete, "images": count, "invalid":
        [files left out by this run]}``.

    Raises:
        ValueError: a bad size, mode or dtype; an image that cannot be read (named), without ``skip_invalid``.
        FileNotFoundError: missing images or VAE, a folder that cannot be listed. FileExistsError: ``out`` holds
        another extraction and ``overwrite`` is False.
    """
    for name, value in (("image_size", image_size), ("shard_size", shard_size), ("batch_size", batch_size)):
        check_int(name, value, 1)
    if image_size % VAE_FACTOR:
        raise ValueError(f"image_size must be divisible by {VAE_FACTOR} (the VAE's downsampling), got {image_size}; "
                         f"e.g. {max(VAE_FACTOR, image_size // VAE_FACTOR * VAE_FACTOR)}.")  # fmt: skip
    check_choice("mode", mode, MODES)
    check_choice("dtype", dtype, ("float32", "float16"))
    check_device(device)
    images, out = Path(images), Path(out)
    classes, items = list_images(images)
    vae_name = vae if isinstance(vae, str) else "<module>"
    model = load_vae(vae, device) if isinstance(vae, str) else vae.to(device).eval()
    factor = 2 ** (len(model.config.block_out_channels) - 1)
    if factor != VAE_FACTOR:
        raise ValueError(f"The VAE downsamples by {factor}, not {VAE_FACTOR} as Stable Diffusion's (and DiT) do.")
    side = image_size // VAE_FACTOR
    record = _record(images, classes, items, vae_name, image_size, shard_size, mode, flip, dtype, seed,
                     (model.config.latent_channels, side, side))  # fmt: skip
    _prepare_out(out, images, record, overwrite)

    num_shards = -(-len(items) // shard_size)
    stored = getattr(torch, dtype)
    written = skipped = 0
    invalid: list[str] = []
    from tqdm import tqdm

    with tqdm(total=len(items), unit="img", desc="extract-latents", disable=not progress, dynamic_ncols=True) as bar:
        for index in range(num_shards):
            chunk = items[index * shard_size:(index + 1) * shard_size]
            path = shard_path(out, index)
            if _shard_is_complete(path, len(chunk), record):
                skipped += 1
                bar.update(len(chunk))
                _write_record(out, record)
                continue
            latents, flipped, labels, left_out = [], [], [], []
            for start in range(0, len(chunk), batch_size):
                first = index * shard_size + start
                batch, arrays = [], []
                for j, (p, y) in enumerate(chunk[start:start + batch_size]):
                    try:
                        arrays.append(_crop(p, image_size))
                    except InvalidImageError as err:
                        if not skip_invalid:
                            raise InvalidImageError(f"{err}. Remove or replace it, or pass skip_invalid=True to "
                                                    "leave unreadable images out.") from None  # fmt: skip
                        left_out.append(str(p.relative_to(images)))
                        continue
                    batch.append((first + j, y))
                bar.update(len(chunk[start:start + batch_size]))
                if not batch:
                    continue
                # each image keeps the generator of its index in the listing, whatever was left out around it
                generators = [image_generator(seed, i) for i, _ in batch]
                x = _pixels(arrays).to(device)
                latents.append(encode(model, x, mode, generators).to("cpu", stored))
                if flip:  # the same generators, continued: the flipped image's own draw
                    flipped.append(encode(model, x.flip(-1), mode, generators).to("cpu", stored))
                labels += [y for _, y in batch]
            if not latents:
                raise InvalidImageError(f"Every image of shard {index} ({len(chunk)} images) cannot be read; check "
                                        f"the image folder {images}.")  # fmt: skip
            tensors = {LATENTS_KEY: torch.cat(latents), LABELS_KEY: torch.tensor(labels)}
            if flip:
                tensors[FLIPPED_KEY] = torch.cat(flipped)
            _write_shard(path, {k: v.contiguous() for k, v in tensors.items()}, record["digest"], left_out)
            _write_record(out, record)  # only now: a run that fails on its first shard leaves no record
            written += 1
            invalid += left_out
    return {"shards": num_shards, "written": written, "skipped": skipped, "images": len(items), "invalid": invalid}


def _write_record(out: Path, record: dict[str, Any]) -> None:
    record_file = out / RECORD_NAME
    text = json.dumps(record, indent=2) + "\n"
    if not record_file.is_file() or record_file.read_text() != text:
        record_file.write_text(text)
