"""The embedded speech: 16 kHz mono FLAC, the samples of the original Debian files (lossless), a fixed split."""

import glob
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from derf_zoo.data.audio import read_audio
from derf_zoo.data.speech_assets import (
    EMBEDDED_SPLIT,
    SAMPLE_RATE,
    clip_to_int16,
    embedded_speech_dir,
    embedded_speech_index,
    embedded_speech_manifest,
)

# Where the unpacked .deb files may be (scripts/make_speech_assets.py documents how to get them).
_ORIGINAL_ROOTS = [Path("/work/debs/root"), Path("/")]
_ORIGINALS = {
    "librivox": "usr/share/pocketsphinx/test/data/librivox",
    "cards": "usr/share/pocketsphinx/test/data/cards",
    "alsa": "usr/share/sounds/alsa",
}


def _original(name: str) -> Path | None:
    group, stem = name.split("/")[0], Path(name).stem
    for root in _ORIGINAL_ROOTS:
        path = root / _ORIGINALS[group] / f"{stem}.wav"
        if path.is_file():
            return path
    return None


def test_every_clip_decodes_to_its_recorded_16k_mono_samples():
    index = embedded_speech_index()
    folder = embedded_speech_dir()
    assert sorted(index["clips"]) == sorted(EMBEDDED_SPLIT) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.flac")
    )
    assert "alsa/Noise.flac" not in index["clips"]  # noise is not speech
    total = 0
    for name, entry in index["clips"].items():
        pcm, rate = sf.read(folder / name, dtype="int16")
        assert rate == SAMPLE_RATE and pcm.ndim == 1 and len(pcm) == entry["num_samples"], name
        # the hash was taken from the original WAV's samples (or soxr's output of them) when the clip was built
        assert hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest() == entry["pcm_sha256"], name
        wav = read_audio(folder / name)
        assert wav.dtype == np.float32 and np.array_equal(wav, pcm / 32768.0)
        total += len(pcm)
    assert 45.0 < total / SAMPLE_RATE < 46.5
    assert sum((folder / n).stat().st_size for n in index["clips"]) < 1_000_000
    assert {p["version"] for p in index["packages"].values()} == {"0.8+5prealpha+1-15", "1.2.8-1"}


def test_the_split_is_fixed_by_file_and_validation_is_real_speech_of_every_source():
    root, train = embedded_speech_manifest("train")
    _, valid = embedded_speech_manifest("valid")
    assert root == embedded_speech_dir()
    assert len(train) == 14 and len(valid) == 4 and not {n for n, _ in train} & {n for n, _ in valid}
    assert {n.split("/")[0] for n, _ in valid} == {"librivox", "cards", "alsa"}
    assert 7.0 < sum(s for _, s in valid) / SAMPLE_RATE < 8.0
    with pytest.raises(ValueError, match=r"Unknown embedded speech split 'validation'.*Valid choices: train, valid"):
        embedded_speech_manifest("validation")


def test_clips_match_the_original_debian_wav_files_sample_for_sample():
    originals = {name: _original(name) for name in EMBEDDED_SPLIT}
    if not all(originals.values()):
        pytest.skip("the unpacked pocketsphinx-testdata / alsa-utils files are not on this machine")
    import soxr

    folder = embedded_speech_dir()
    for name, original in originals.items():
        pcm, rate = sf.read(original, dtype="int16")
        if rate != SAMPLE_RATE:  # alsa: 48 kHz, resampled with soxr and rounded back to 16 bit
            assert rate == 48_000
            pcm = clip_to_int16(soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE))
        assert np.array_equal(sf.read(folder / name, dtype="int16")[0], pcm), name
    assert len(glob.glob(str(originals["alsa/Side_Left.flac"].parent / "*.wav"))) == 9  # 8 voices + Noise.wav
