"""Decoding audio files for speech models: soundfile in, float32 mono at the target rate out, or an error that
names the file.

wav2vec 2.0 reads raw 16 kHz samples; a file at another rate is resampled with soxr only when asked (a silent
resample hides a wrong dataset), a multi-channel file is downmixed only when asked (fairseq averages channels
without a word; here the recipe says ``downmix: true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["AudioError", "AudioInfo", "audio_info", "read_audio"]


class AudioError(ValueError):
    """A file that cannot be used as speech input; the message names the file and why."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: number of frames (samples per channel), sample rate, channels."""

    frames: int
    sample_rate: int
    channels: int


def audio_info(path: str | Path) -> AudioInfo:
    """Read the header of ``path`` (any format libsndfile knows: WAV, FLAC, OGG, ...) without decoding it.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: libsndfile cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist.")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:  # LibsndfileError subclasses RuntimeError
        raise AudioError(f"audio file {path} cannot be read by soundfile: {err}") from err
    return AudioInfo(frames=int(info.frames), sample_rate=int(info.samplerate), channels=int(info.channels))


def read_audio(
    path: str | Path,
    sample_rate: int = 16_000,
    resample: bool = False,
    downmix: bool = False,
) -> np.ndarray:
    """Decode ``path`` to a float32 mono signal in [-1, 1] at ``sample_rate``.

    Args:
        path: the audio file.
        sample_rate: the rate the model expects.
        resample: resample a file at another rate with soxr (quality "HQ"); False raises instead.
        downmix: average the channels of a multi-channel file; False raises instead.

    Returns:
        A 1-D float32 array.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioError: unreadable, another rate without ``resample``, several channels without ``downmix``.
    """
    path = Path(path)
    info = audio_info(path)
    if info.channels != 1 and not downmix:
        raise AudioError(
            f"audio file {path} has {info.channels} channels; speech models read mono. Convert it, or set "
            "downmix: true to average the channels."
        )
    if info.sample_rate != sample_rate and not resample:
        raise AudioError(
            f"audio file {path} is sampled at {info.sample_rate} Hz, not {sample_rate} Hz. Convert it, or set "
            f"resample: true to resample it with soxr when it is read."
        )
    try:
        wav, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"audio file {path} cannot be decoded by soundfile: {err}") from err
    wav = wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
    if rate != sample_rate:
        import soxr

        wav = soxr.resample(wav, rate, sample_rate)
    return np.ascontiguousarray(wav, dtype=np.float32)
