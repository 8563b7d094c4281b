"""Write derf_zoo/data/assets/speech/ (FLAC clips + index.json) from two Debian packages.

Real speech for the wav2vec 2.0 demo and tests, embedded so that neither needs a download:

- ``pocketsphinx-testdata``: five LibriVox utterances ("Sense and Sensibility", ch. 1) and five "cards"
  utterances, 16 kHz mono 16-bit WAV, stored losslessly as FLAC (same samples).
- ``alsa-utils``: the eight channel-name voice clips ("Front Left", ...), 48 kHz mono 16-bit WAV, resampled to
  16 kHz with soxr (``soxr.resample``, quality "HQ"), rounded back to 16-bit and stored as FLAC.
  ``Noise.wav`` is left out: it is not speech.

Usage (from the repository root)::

    python scripts/make_speech_assets.py                 # apt-get download both packages into a temp folder
    python scripts/make_speech_assets.py --debs /work/debs  # or use .deb files already downloaded

The .deb files are unpacked with ``dpkg -x`` (no root needed); each package's Debian ``copyright`` file is copied
next to the clips, with the GPL-2 text it refers to. The licences and the split are described in
derf_zoo/data/assets/speech/README.md (written by hand); the split lives in ``derf_zoo.data.speech_assets``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the split is read from the package (one source of truth)

from derf_zoo.data.speech_assets import EMBEDDED_SPLIT, SAMPLE_RATE, clip_to_int16  # noqa: E402

PACKAGES = {
    # package: (folder inside the package, {group in our assets: file pattern})
    "pocketsphinx-testdata": {
        "librivox": "usr/share/pocketsphinx/test/data/librivox/*.wav",
        "cards": "usr/share/pocketsphinx/test/data/cards/*.wav",
    },
    "alsa-utils": {"alsa": "usr/share/sounds/alsa/*.wav"},
}
NOT_SPEECH = {"Noise.wav"}
# alsa-utils' copyright file names GPL-2 for all its files and points at this copy instead of quoting it
GPL2 = Path("/usr/share/common-licenses/GPL-2")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def find_deb(debs: Path, package: str) -> Path:
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise FileNotFoundError(f"no {package}_*.deb in {debs}; run without --debs to apt-get download it.")
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debs", type=Path, help="folder with the .deb files (default: apt-get download them)")
    parser.add_argument("--out", type=Path, default=ROOT / "derf_zoo" / "data" / "assets" / "speech")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        debs = args.debs
        if debs is None:
            debs = tmp / "debs"
            debs.mkdir()
            subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True)
        index = {"sample_rate": SAMPLE_RATE, "packages": {}, "clips": {}}
        for package, groups in PACKAGES.items():
            deb = find_deb(debs, package)
            version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                     text=True).stdout.strip()  # fmt: skip
            unpacked = tmp / package
            subprocess.run(["dpkg", "-x", str(deb), str(unpacked)], check=True)
            index["packages"][package] = {"version": version, "deb": deb.name, "deb_sha256": sha256_file(deb)}
            args.out.mkdir(parents=True, exist_ok=True)  # the package's licence travels with its clips, verbatim
            copyright_file = unpacked / "usr" / "share" / "doc" / package / "copyright"
            (args.out / f"copyright.{package}").write_bytes(copyright_file.read_bytes())
            for group, pattern in groups.items():
                for wav in sorted(glob.glob(str(unpacked / pattern))):
                    wav = Path(wav)
                    if wav.name in NOT_SPEECH:
                        continue
                    pcm, rate = sf.read(wav, dtype="int16")
                    if pcm.ndim != 1:
                        raise ValueError(f"{wav}: expected mono, got {pcm.shape[1]} channels")
                    if rate != SAMPLE_RATE:
                        # soxr on the float signal, then back to 16 bit (FLAC stores integers): the tests redo this
                        # from the original WAV and compare sample for sample.
                        pcm = clip_to_int16(soxr.resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE))
                    name = f"{group}/{wav.stem}.flac"
                    out = args.out / name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(out, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                    index["clips"][name] = {
                        "package": package,
                        "original": str(wav.relative_to(unpacked)),
                        "original_sample_rate": rate,
                        "resampled": rate != SAMPLE_RATE,
                        "num_samples": len(pcm),
                        "pcm_sha256": hashlib.sha256(pcm.astype("<i2").tobytes()).hexdigest(),
                    }
    if not GPL2.is_file():
        raise FileNotFoundError(f"{GPL2} (Debian's base-files) is needed: the alsa-utils clips are GPL-2.")
    (args.out / "GPL-2").write_bytes(GPL2.read_bytes())
    missing = sorted(set(EMBEDDED_SPLIT) - set(index["clips"]))
    if missing:
        raise RuntimeError(f"the split names clips that were not built: {missing}")
    for name, entry in index["clips"].items():
        entry["split"] = EMBEDDED_SPLIT.get(name, "unused")
    (args.out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    total = sum(f.stat().st_size for f in args.out.rglob("*.flac"))
    seconds = sum(e["num_samples"] for e in index["clips"].values()) / SAMPLE_RATE
    print(f"wrote {len(index['clips'])} clips ({seconds:.1f} s of audio, {total / 1e3:.0f} kB of FLAC) to {args.out}")


if __name__ == "__main__":
    main()
