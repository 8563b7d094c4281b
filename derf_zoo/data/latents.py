"""Precomputed VAE latents for latent diffusion (DiT on ImageNet 256 px), read from safetensors shards.

Training never runs the VAE: a folder holds shards ``*.safetensors``, each with

- ``latents``: float (N, 4, 32, 32), ``vae.encode(x).latent_dist.sample() * 0.18215`` of the center-cropped
  256 px images (sd-vae-ft-ema; what the official DiT ``train.py`` feeds the model);
- ``labels``: int64 (N,);
- optionally ``latents_flipped``: the same images flipped horizontally before encoding. With ``flip=True`` each
  sample takes one of the two at random, which is DiT's random horizontal flip moved before the encoder (a
  flip of the latent itself is not the latent of the flipped image).

A folder written by ``derf-zoo extract-latents`` also holds its record (:data:`RECORD_NAME`), which says how many
images and shards the extraction has: an interrupted extraction (its shards are in class order, so the missing ones
are whole classes) is refused, naming what is missing, unless ``allow_incomplete=True``.

``val_root`` (same layout) is optional: DiT has no validation split (it is scored by FID), so without one the
recipes run no validation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from derf_zoo.data.base import SplitDataModule

__all__ = ["FLIPPED_KEY", "LABELS_KEY", "LATENTS_KEY", "RECORD_NAME", "SD_VAE_SCALE", "SHARD_GLOB",
           "LatentDataModule", "LatentShards", "check_extraction", "check_shard", "shard_name"]

#: The tensors of a shard (``derf-zoo extract-latents`` writes them; :class:`LatentShards` reads them).
LATENTS_KEY, LABELS_KEY, FLIPPED_KEY = "latents", "labels", "latents_flipped"
#: The files of a shard folder (anything else in the folder, e.g. the extractor's record, is ignored).
SHARD_GLOB = "*.safetensors"
#: What ``derf-zoo extract-latents`` records about an extraction (images, shard size, ...) next to its shards.
RECORD_NAME = "extract_latents.json"
#: Stable Diffusion's VAE latent scale: DiT trains on ``latent_dist.sample() * 0.18215``.
SD_VAE_SCALE = 0.18215


def check_shard(tensors: dict[str, Tensor], source: str | Path) -> None:
    """Raise ValueError unless ``tensors`` (one shard) hold ``latents`` (N, C, H, W) and ``labels`` (N,), and
    ``latents_flipped`` if present has the shape of ``latents``."""
    missing = [k for k in (LATENTS_KEY, LABELS_KEY) if k not in tensors]
    if missing:
        raise ValueError(f"Latent shard {source} lacks {missing}; it holds {sorted(tensors)}.")
    latents, labels = tensors[LATENTS_KEY], tensors[LABELS_KEY]
    if latents.ndim != 4 or labels.ndim != 1:
        raise ValueError(f"Latent shard {source}: latents must be (N, C, H, W) and labels (N,), got "
                         f"{tuple(latents.shape)} and {tuple(labels.shape)}.")  # fmt: skip
    if len(latents) != len(labels):
        raise ValueError(f"Latent shard {source}: {len(latents)} latents but {len(labels)} labels.")
    flipped = tensors.get(FLIPPED_KEY)
    if flipped is not None and flipped.shape != latents.shape:
        raise ValueError(f"Latent shard {source}: {FLIPPED_KEY} {tuple(flipped.shape)} differs from latents "
                         f"{tuple(latents.shape)}.")  # fmt: skip


def shard_name(index: int) -> str:
    """The file name of shard ``index`` as ``derf-zoo extract-latents`` writes it."""
    return f"shard_{index:05d}.safetensors"


def check_extraction(root: Path, allow_incomplete: bool = False) -> None:
    """Refuse a folder whose extraction record names shards that are not there (an interrupted extraction).

    Args:
        root: a shard folder; one without :data:`RECORD_NAME` (written by other tools) is not checked.
        allow_incomplete: warn instead of refusing.

    Raises:
        ValueError: the record is unreadable, or shards it implies are missing (named).
    """
    record_file = root / RECORD_NAME
    if not record_file.is_file():
        return
    try:
        record = json.loads(record_file.read_text())
        num_images, shard_size = int(record["num_images"]), int(record["shard_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{record_file} is unreadable ({err!r}); extract the latents again (derf-zoo extract-latents"
                         " --overwrite).") from err  # fmt: skip
    expected = -(-num_images // shard_size)
    missing = [shard_name(i) for i in range(expected) if not (root / shard_name(i)).is_file()]
    if not missing:
        return
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    what = (f"{root} holds an incomplete extraction: {RECORD_NAME} records {num_images} images in {expected} shards, "
            f"but {len(missing)} shard(s) are missing ({shown}). Shards are in class order, so the missing ones are "
            "whole classes.")  # fmt: skip
    if allow_incomplete:
        rank_zero_warn(f"{what} Training on the {expected - len(missing)} shard(s) there (allow_incomplete=True).")
        return
    raise ValueError(f"{what} Finish it by running the same derf-zoo extract-latents command again (it resumes), or "
                     "set allow_incomplete: true to train on what is there.")


class LatentShards(Dataset):
    """Every shard of a folder in memory (ImageNet at 32x32x4 fp32 is ~6.3 GB; store fp16 to halve it).

    Args:
        root: the folder of ``*.safetensors`` shards.
        flip: sample ``latents_flipped`` with probability 1/2 (every shard must have it).
        allow_incomplete: load an interrupted extraction (see :func:`check_extraction`) with a warning.

    Raises:
        FileNotFoundError: no shard in ``root``.
        ValueError: a shard lacks ``latents``/``labels`` or their sizes differ; ``flip`` and a shard without
            ``latents_flipped``; an incomplete extraction.
    """

    def __init__(self, root: str | Path, flip: bool = False, allow_incomplete: bool = False) -> None:
        from safetensors.torch import load_file

        root = Path(root)
        shards = sorted(root.glob(SHARD_GLOB))
        if not shards:
            raise FileNotFoundError(f"No latent shards ({SHARD_GLOB}) in {root}; see derf_zoo.data.latents for "
                                    "the layout, or write them with derf-zoo extract-latents.")  # fmt: skip
        check_extraction(root, allow_incomplete)
        latents, labels, flipped = [], [], []
        for shard in shards:
            tensors = load_file(str(shard))
            check_shard(tensors, shard)
            if latents and tensors[LATENTS_KEY].shape[1:] != latents[0].shape[1:]:
                raise ValueError(f"Latent shard {shard} holds latents of shape {tuple(tensors[LATENTS_KEY].shape[1:])}"
                                 f", {shards[0].name} {tuple(latents[0].shape[1:])}: one folder, one shape.")
            latents.append(tensors[LATENTS_KEY])
            labels.append(tensors[LABELS_KEY].long())
            flipped.append(tensors.get(FLIPPED_KEY))
            if flip and flipped[-1] is None:  # else flip=True would silently train without the flip
                raise ValueError(f"flip=True needs {FLIPPED_KEY} in every shard, and {shard} has none (extracted "
                                 "without --flip). Set flip: false (no random flip), or extract again with --flip.")
        self.latents = torch.cat(latents)
        self.labels = torch.cat(labels)
        self.flipped = torch.cat(flipped) if flip else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        source = self.latents
        if self.flipped is not None and torch.rand(()) < 0.5:
            source = self.flipped
        return source[i].float(), self.labels[i]


class LatentDataModule(SplitDataModule):
    """Precomputed latents as a LightningDataModule: batches of (latents, labels).

    Args:
        root: folder of training shards.
        val_root: folder of validation shards, or None for no validation.
        flip: DiT's random horizontal flip (needs ``latents_flipped`` in the shards: ``extract-latents --flip``).
        num_classes: classes of the labels (ImageNet: 1000).
        batch_size: per-device batch size.
        num_workers: loader workers.
        allow_incomplete: train on an interrupted extraction (with a warning) instead of refusing it.
    """

    def __init__(self, root: str, val_root: str | None = None, flip: bool = True, num_classes: int = 1000,
                 batch_size: int = 32, num_workers: int = 4, allow_incomplete: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.num_classes = num_classes
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.train_set = LatentShards(self.hparams.root, flip=self.hparams.flip,
                                      allow_incomplete=self.hparams.allow_incomplete)  # fmt: skip
        self.train_eval_set = copy.copy(self.train_set)  # the same tensors, without the flip
        self.train_eval_set.flipped = None
        if self.hparams.val_root:
            self.val_set = LatentShards(self.hparams.val_root, flip=False,
                                        allow_incomplete=self.hparams.allow_incomplete)  # fmt: skip
        bad = self.train_set.labels[(self.train_set.labels < 0) | (self.train_set.labels >= self.num_classes)]
        if len(bad):
            raise ValueError(f"Latent labels must be in [0, {self.num_classes - 1}], found {int(bad[0])}.")

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader | list:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader | list:
        return self.val_dataloader()
