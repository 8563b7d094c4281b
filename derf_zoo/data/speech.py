"""Raw-audio data for wav2vec 2.0 pretraining, with fairseq's semantics (``fairseq/data/audio/raw_audio_dataset.py``).

Each utterance is decoded to float32 at 16 kHz (``derf_zoo.data.audio``), optionally normalised to zero mean and
unit variance (``normalize``, fairseq's ``F.layer_norm`` over the whole utterance, as the Large recipes do), and
batched by length under a total-samples budget (``derf_zoo.data.speech_sampler``). The collater makes a batch
rectangular the way fairseq's pretraining does by default (``enable_padding: false``): every utterance is
cropped to the shortest in the batch (and to ``max_sample_size``) at a random offset (training) or centred
(validation), so the attention mask is all ones; ``pad=True`` pads to the longest instead (capped at
``max_sample_size``) and masks the padding. Batches are dicts with Hugging Face's names:
``{"input_values": FloatTensor (B, T), "attention_mask": LongTensor (B, T), 1 = real sample, 0 = padding}``.

Bad audio (missing, unreadable, another sample rate without ``resample``, several channels without
``downmix``, shorter than ``min_sample_size``, or not as long as its manifest line says) is found when the
dataset is built, by reading every file's header: an error naming the files, or with ``skip_invalid`` a warning
that counts and names them, and the rest is used. A file whose header is fine but whose data fails to decode
(a truncated FLAC: "lost sync") is found when it is read: an error naming it, or with ``skip_invalid`` a warning,
the file counted in ``read_failures`` and left out from then on, its place in the batch taken by the nearest
shorter usable utterance (so the batch keeps its size and its samples budget).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from derf_zoo._validate import check_int
from derf_zoo.data.audio import AudioError, audio_info, read_audio
from derf_zoo.data.base import SplitDataModule
from derf_zoo.data.speech_assets import SAMPLE_RATE, embedded_speech_manifest
from derf_zoo.data.speech_manifest import Manifest, read_manifest
from derf_zoo.data.speech_sampler import LengthBucketBatchSampler

__all__ = ["RECEPTIVE_FIELD", "SpeechCollater", "SpeechDataModule", "SpeechDataset"]

# Samples the standard wav2vec 2.0 CNN (kernels 10,3,3,3,3,2,2; strides 5,2,2,2,2,2,2) needs for one frame.
RECEPTIVE_FIELD = 400
_LISTED = 20  # files named in a skip warning (the count is always complete)


class SpeechDataset(Dataset):
    """Utterances from a manifest, checked when built; ``dataset[i]`` is the float32 signal (T,) of utterance i.

    Args:
        manifest: a parsed manifest (``read_manifest``), or a path to one.
        sample_rate: the rate the model reads.
        min_sample_size: shorter utterances (at ``sample_rate``) are invalid; at least the CNN's receptive field.
        normalize: zero mean, unit variance per utterance (fairseq ``normalize``, HF ``do_normalize``).
        resample: resample files at another rate with soxr; False makes them invalid.
        downmix: average the channels of multi-channel files; False makes them invalid.
        skip_invalid: leave invalid files out (counted in ``skipped`` and warned about); False raises.
        name: what the dataset is called in messages (e.g. ``"train"``).
    """

    def __init__(
        self,
        manifest: Manifest | str | Path,
        sample_rate: int = SAMPLE_RATE,
        min_sample_size: int = RECEPTIVE_FIELD,
        normalize: bool = False,
        resample: bool = False,
        downmix: bool = False,
        skip_invalid: bool = False,
        name: str = "speech",
    ) -> None:
        if not isinstance(manifest, Manifest):
            manifest = read_manifest(manifest)
        self.sample_rate, self.normalize, self.resample, self.downmix = sample_rate, normalize, resample, downmix
        self.paths: list[Path] = []
        self.sizes: list[int] = []  # samples at sample_rate, what the batching budget counts
        self.skipped: list[tuple[Path, str]] = []  # (file, why) of every invalid file
        self.skip_invalid, self.name = skip_invalid, name
        self.read_failures: dict[int, str] = {}  # index -> why, for files that failed to decode when read
        for rel, listed in manifest.entries:
            path = manifest.root / rel
            try:
                size = self._check(path, listed, min_sample_size)
            except (OSError, AudioError) as err:  # OSError: FileNotFoundError, a file that vanished meanwhile
                self.skipped.append((path, str(err)))
                continue
            self.paths.append(path)
            self.sizes.append(size)
        where = f"manifest {manifest.source}" if manifest.source else f"root {manifest.root}"
        if self.skipped and not skip_invalid:
            raise AudioError(
                f"{name} data ({where}): {len(self.skipped)} of {len(manifest.entries)} files are not usable speech "
                f"input:\n{self._list_skipped()}\nFix them, or set skip_invalid: true to leave them out."
            )
        if self.skipped:
            warnings.warn(
                f"{name} data ({where}): skipped {len(self.skipped)} of {len(manifest.entries)} files "
                f"(skip_invalid: true):\n{self._list_skipped()}",
                stacklevel=2,
            )
        if not self.paths:
            raise AudioError(f"{name} data ({where}): no usable file is left.")

    def _check(self, path: Path, listed: int, min_sample_size: int) -> int:
        """The length of ``path`` at ``sample_rate`` if it is usable; else an AudioError/OSError that says why."""
        info = audio_info(path)
        if info.frames != listed:
            raise AudioError(
                f"audio file {path} has {info.frames} samples but its manifest line says {listed}; the manifest is "
                "stale, write it again."
            )
        if info.channels != 1 and not self.downmix:
            raise AudioError(f"audio file {path} has {info.channels} channels (set downmix: true to average them).")
        if info.sample_rate != self.sample_rate and not self.resample:
            raise AudioError(
                f"audio file {path} is sampled at {info.sample_rate} Hz, not {self.sample_rate} Hz (set resample: "
                "true to resample it with soxr)."
            )
        # soxr returns round(frames * ratio) samples
        size = round(info.frames * self.sample_rate / info.sample_rate)
        if size < min_sample_size:
            raise AudioError(
                f"audio file {path} has {size} samples at {self.sample_rate} Hz, fewer than min_sample_size="
                f"{min_sample_size}."
            )
        return size

    def _list_skipped(self) -> str:
        lines = [f"  {why}" for _, why in self.skipped[:_LISTED]]
        if len(self.skipped) > _LISTED:
            lines.append(f"  ... and {len(self.skipped) - _LISTED} more")
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, i: int) -> Tensor:
        try:
            wav = read_audio(self.paths[i], self.sample_rate, resample=self.resample, downmix=self.downmix)
        except (OSError, AudioError) as err:
            if not self.skip_invalid:
                raise AudioError(f"{self.name} data: {err} (its header was fine: the data is damaged). Replace the "
                                 "file, or set skip_invalid: true to leave it out.") from err  # fmt: skip
            self.read_failures[i] = str(err)
            warnings.warn(f"{self.name} data: {err}; leaving it out (skip_invalid: true), {len(self.read_failures)} "
                          "file(s) left out when read so far.", stacklevel=3)  # fmt: skip
            return None
        return torch.from_numpy(wav[: self.sizes[i]])  # the length the budget counted, whatever the resampler did

    def _stand_in(self, i: int) -> int | None:
        """The usable utterance nearest in length to ``i`` and not longer (then longer): what takes its place."""
        order = sorted(range(len(self.sizes)), key=lambda j: (self.sizes[j] > self.sizes[i],
                                                              abs(self.sizes[j] - self.sizes[i]), j))  # fmt: skip
        return next((j for j in order if j not in self.read_failures), None)

    def __getitem__(self, i: int) -> Tensor:
        wav = self._read(i) if i not in self.read_failures else None
        while wav is None:
            j = self._stand_in(i)
            if j is None:
                raise AudioError(f"{self.name} data: every file failed to decode when read: no usable file is left.")
            wav = self._read(j)
        if self.normalize:
            with torch.no_grad():
                wav = F.layer_norm(wav, wav.shape)  # fairseq: zero mean, unit variance (eps 1e-5)
        return wav

    @property
    def seconds(self) -> float:
        """Total audio, in seconds."""
        return sum(self.sizes) / self.sample_rate


class SpeechCollater:
    """Turns a list of 1-D signals into ``{"input_values", "attention_mask"}`` (module docstring: the two modes).

    Args:
        max_sample_size: longest crop; None for no limit.
        pad: pad to the longest in the batch (masking the padding); False crops to the shortest (fairseq's
            pretraining default).
        random_crop: crop at a random offset (training, torch's global generator); False crops the centre.
    """

    def __init__(self, max_sample_size: int | None = None, pad: bool = False, random_crop: bool = True) -> None:
        self.max_sample_size, self.pad, self.random_crop = max_sample_size, pad, random_crop

    def target_size(self, sizes: Sequence[int]) -> int:
        size = max(sizes) if self.pad else min(sizes)
        return size if self.max_sample_size is None else min(size, self.max_sample_size)

    def __call__(self, signals: Sequence[Tensor]) -> dict[str, Tensor]:
        target = self.target_size([len(s) for s in signals])
        values = torch.zeros(len(signals), target, dtype=torch.float32)
        mask = torch.zeros(len(signals), target, dtype=torch.long)
        for row, signal in enumerate(signals):
            excess = len(signal) - target
            if excess > 0:
                start = int(torch.randint(0, excess + 1, ())) if self.random_crop else excess // 2
                signal = signal[start : start + target]
            values[row, : len(signal)] = signal
            mask[row, : len(signal)] = 1
        return {"input_values": values, "attention_mask": mask}


class SpeechDataModule(SplitDataModule):
    """Speech for self-supervised pretraining: fairseq manifests, or the real speech embedded in the package.

    Give ``manifest_dir`` (a folder with ``train.tsv`` and ``valid.tsv``, see ``write_manifest``) or
    ``embedded=True`` (45.8 s: LibriVox, "cards" and alsa voice clips; fixed split by file, 7.6 s validation).
    Batches hold at most ``max_tokens`` samples (padding included) per device; under DDP, Lightning hands each
    rank its share of the batches (``LengthBucketBatchSampler``), every utterance once per epoch.

    Args:
        manifest_dir: folder of ``train_manifest`` and ``valid_manifest``.
        embedded: use the embedded clips instead.
        train_manifest / valid_manifest: file names inside ``manifest_dir``.
        max_sample_size: crop length in samples (fairseq 250,000 Base, 320,000 Large); None for no crop.
        min_sample_size: shorter files are invalid; at least (and by default) the receptive field, 400 (fairseq
            recipes: 32,000).
        max_tokens: samples per batch and device, padding included (fairseq 1,400,000 Base, 1,200,000 Large).
        pad: pad to the longest instead of cropping to the shortest (fairseq ``enable_padding``).
        normalize: zero mean, unit variance per utterance (True for Large).
        resample: resample files that are not at 16 kHz with soxr (else they are invalid).
        downmix: average the channels of multi-channel files (else they are invalid).
        skip_invalid: leave invalid files out with a warning that counts and names them (else an error).
        num_workers: loader processes.
        seed: seed of the per-epoch batch shuffling (the same on every rank).
    """

    def __init__(
        self,
        manifest_dir: str | None = None,
        embedded: bool = False,
        train_manifest: str = "train.tsv",
        valid_manifest: str = "valid.tsv",
        max_sample_size: int | None = 250_000,
        min_sample_size: int = RECEPTIVE_FIELD,
        max_tokens: int = 1_400_000,
        pad: bool = False,
        normalize: bool = False,
        resample: bool = False,
        downmix: bool = False,
        skip_invalid: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if (manifest_dir is None) == (not embedded):
            raise ValueError(
                "SpeechDataModule needs exactly one of manifest_dir= (a folder with train.tsv and valid.tsv) or "
                f"embedded=True (the speech clips in the package); got manifest_dir={manifest_dir!r}, "
                f"embedded={embedded!r}."
            )
        for arg, value, low in (("min_sample_size", min_sample_size, RECEPTIVE_FIELD), ("max_tokens", max_tokens, 1),
                                ("max_sample_size", max_sample_size, RECEPTIVE_FIELD)):  # fmt: skip
            if value is None and arg == "max_sample_size":
                continue
            check_int(arg, value, low, owner="SpeechDataModule")
        if max_sample_size is not None and max_sample_size > max_tokens:
            raise ValueError(
                f"SpeechDataModule: max_sample_size={max_sample_size} exceeds max_tokens={max_tokens}: one crop would "
                "not fit in a batch."
            )
        if max_sample_size is not None and min_sample_size > max_sample_size:
            raise ValueError(
                f"SpeechDataModule: min_sample_size={min_sample_size} exceeds max_sample_size={max_sample_size}."
            )
        self.save_hyperparameters()

    def _manifest(self, split: str) -> Manifest:
        h = self.hparams
        if h.embedded:
            root, entries = embedded_speech_manifest(split)
            return Manifest(root=root, entries=tuple(entries))
        return read_manifest(Path(h.manifest_dir).expanduser() / (h.train_manifest if split == "train" else
                                                                   h.valid_manifest))  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        common = {"min_sample_size": h.min_sample_size, "normalize": h.normalize, "resample": h.resample,
                  "downmix": h.downmix, "skip_invalid": h.skip_invalid}  # fmt: skip
        self.train_set = SpeechDataset(self._manifest("train"), name="train", **common)
        self.train_eval_set = self.train_set  # the same signals; the eval loader crops them deterministically
        self.val_set = SpeechDataset(self._manifest("valid"), name="valid", **common)

    def _loader(self, dataset: Dataset | None, shuffle: bool, drop_last: bool = False) -> DataLoader:
        """Bucketed batches; ``shuffle`` also means random crops (training), else centred crops in sorted order."""
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a dataloader.")
        h = self.hparams
        sizes = dataset.sizes if h.max_sample_size is None else [min(s, h.max_sample_size) for s in dataset.sizes]
        # Created inside the *_dataloader hook, so Lightning can rebuild it with a DistributedSampler under DDP.
        batches = LengthBucketBatchSampler(sizes=sizes, max_tokens=h.max_tokens, shuffle=shuffle, seed=h.seed)
        return DataLoader(
            dataset, batch_sampler=batches, num_workers=h.num_workers, persistent_workers=h.num_workers > 0,
            collate_fn=SpeechCollater(h.max_sample_size, pad=h.pad, random_crop=shuffle),
            pin_memory=torch.cuda.is_available(),
        )  # fmt: skip
