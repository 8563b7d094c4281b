"""The real speech embedded in the package: 18 clips (45.8 s, 16 kHz mono FLAC) and their fixed split.

Sources, licences and what was changed: ``derf_zoo/data/assets/speech/README.md``; the clips are built by
``scripts/make_speech_assets.py`` from the Debian packages ``pocketsphinx-testdata`` (LibriVox and "cards"
utterances) and ``alsa-utils`` (channel-name voice clips, resampled from 48 kHz).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from derf_zoo._validate import unknown_name_error

__all__ = ["EMBEDDED_SPLIT", "SAMPLE_RATE", "clip_to_int16", "embedded_speech_dir", "embedded_speech_index",
           "embedded_speech_manifest"]  # fmt: skip

SAMPLE_RATE = 16_000

_LIBRIVOX = "sense_and_sensibility_01_austen_64kb-{}"
# The split is by file, fixed once: every source (reader, speaker, recording) has clips on both sides, and the
# validation clips are real speech too: 1 LibriVox sentence, 1 "cards" utterance, 2 alsa voice clips (7.6 s of 45.8).
EMBEDDED_SPLIT: dict[str, str] = {
    **{f"librivox/{_LIBRIVOX.format(n)}.flac": "train" for n in ("0870", "0880", "0890", "0920")},
    f"librivox/{_LIBRIVOX.format('0930')}.flac": "valid",
    **{f"cards/{n}.flac": "train" for n in ("001", "002", "004", "005")},
    "cards/003.flac": "valid",
    **{f"alsa/{n}.flac": "train" for n in ("Front_Center", "Front_Left", "Front_Right")},
    **{f"alsa/{n}.flac": "train" for n in ("Rear_Center", "Rear_Left", "Rear_Right")},
    "alsa/Side_Left.flac": "valid",
    "alsa/Side_Right.flac": "valid",
}
SPLITS = ("train", "valid")


def clip_to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) to 16-bit integers (x * 32768, rounded half to even, clipped)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def embedded_speech_dir() -> Path:
    """The folder that holds the embedded FLAC clips (``<group>/<name>.flac``) and ``index.json``."""
    folder = resources.files("derf_zoo.data").joinpath("assets/speech")
    if not isinstance(folder, Path) or not folder.is_dir():
        raise FileNotFoundError(
            f"derf_zoo's embedded speech is not a folder on disk ({folder}); install derf_zoo unzipped "
            "(pip install does) or rebuild the clips with scripts/make_speech_assets.py."
        )
    return folder


def embedded_speech_index() -> dict:
    """``index.json``: per clip its source package, original file, original rate, samples and PCM sha256."""
    return json.loads((embedded_speech_dir() / "index.json").read_text())


def embedded_speech_manifest(split: str) -> tuple[Path, list[tuple[str, int]]]:
    """(root, [(relative path, number of samples), ...]) of one split of the embedded clips, in a fixed order."""
    if split not in SPLITS:
        raise unknown_name_error("embedded speech split", split, SPLITS)
    clips = embedded_speech_index()["clips"]
    return embedded_speech_dir(), [(name, clips[name]["num_samples"]) for name in sorted(EMBEDDED_SPLIT)
                                   if EMBEDDED_SPLIT[name] == split]  # fmt: skip
