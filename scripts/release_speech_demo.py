"""Train, export and measure the speech demo's models: ``wav2vec2_tiny_{derf,ln}.speech``.

Trains both with the demo's recipes (``recipes/wav2vec2/wav2vec2_tiny_{derf,ln}_speech.yaml``, seed 0, exactly what
``derf-zoo demo wav2vec2`` runs), exports each final checkpoint with ``derf-zoo export``'s code path (a Hub folder
re-measured with ``--eval``), reloads the exported weights, measures the demo's headline on them (the 4 embedded
validation clips, each whole, 8 fixed mask draws: seeds 0-7) and writes the release folders with those numbers.

    python scripts/release_speech_demo.py [--out outputs/release_speech] [--dest derf_zoo/checkpoints] [--overwrite]

Writes ``<dest>/wav2vec2_tiny_{derf,ln}.speech/`` (config.json, model.safetensors, README.md) and
``<dest>/speech_manifest_entries.yaml`` (the entries to paste at the end of derf_zoo/checkpoints/manifest.yaml,
sha256 pinned). About 1.5 minutes of CPU time in all. Existing export or release folders are refused unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

DATASET = "derf_zoo-embedded-speech"
SPLIT = "validation (embedded fixed split: 4 clips, 7.6 s, each whole; 8 fixed mask draws, seeds 0-7)"
PROTOCOL = (
    "Pretraining loss (contrastive + 0.1 diversity + 10 feature penalty) in bits per masked frame, as fairseq "
    "reports it: each of the 4 embedded validation clips alone and whole, eval mode, span masks and "
    "negatives drawn from torch.Generator seeds 0-7 (derf_zoo.commands.demo.speech.clip_losses); the mean over "
    "clips of each clip's summed bits / summed masked frames. Codebook perplexity: fairseq's prob_perplexity "
    "(soft) and code_perplexity (distinct argmax codes), of 2 x 32 entries, averaged over clips and draws."
)


def metrics_of(clips) -> dict[str, float]:
    return {"loss": round(clips.mean, 4), "perplexity": round(float(clips.perplexity.mean()), 2),
            "code_perplexity": round(float(clips.code_perplexity.mean()), 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/release_speech"))
    parser.add_argument("--dest", type=Path, default=Path("derf_zoo/checkpoints"))
    parser.add_argument("--overwrite", action="store_true", help="replace export and release folders that already "
                        "exist (default: refuse)")
    args = parser.parse_args()

    import torch

    import derf_zoo
    from derf_zoo.commands.demo import speech
    from derf_zoo.tasks.export import export_checkpoint

    runs = {tag: speech.train_one(tag, args.out, epochs=None, progress=False) for tag in ("derf", "ln")}
    gap = speech.paired_noise(runs["derf"].clips, runs["ln"].clips)
    entries = []
    for tag, run in runs.items():
        name, recipe = f"wav2vec2_tiny_{tag}.speech", f"recipes/wav2vec2/wav2vec2_tiny_{tag}_speech.yaml"
        exported, recorded = export_checkpoint(run.checkpoint, args.out / "export" / name, evaluate=True, name=name,
                                               recipe=recipe, dataset=DATASET, overwrite=args.overwrite)  # fmt: skip
        model = derf_zoo.from_pretrained(exported).eval()
        clips = speech.clip_losses(model)
        # the export holds the trained weights (float32 sums: thread counts change the last bits)
        torch.testing.assert_close(clips.loss, run.clips.loss, rtol=1e-5, atol=1e-5)
        metrics = metrics_of(clips)
        produced_by = (
            f"trained by derf_zoo: `derf-zoo demo wav2vec2` (recipe above, seed 0, 100 epochs = 400 updates on the "
            f"38 s of embedded training speech, CPU, {run.cpu_seconds:.0f} s CPU time), final weights exported with "
            f"`derf-zoo export`; validation loss in the run's own loader (centred crops, batch masks): "
            f"{recorded['loss']:.3f} bits; Derf minus LayerNorm on the clips above: "
            f"{runs['derf'].clips.mean - runs['ln'].clips.mean:+.3f} ± {gap:.3f} bits (2 SE over the 4 clips, paired)"
        )
        folder = model.save_pretrained(args.dest / name, name=name, metrics=metrics, dataset=DATASET, split=SPLIT,
                                       recipe=recipe, produced_by=produced_by, eval_protocol=PROTOCOL,
                                       task_type="feature-extraction", license="apache-2.0",
                                       overwrite=args.overwrite)  # fmt: skip
        sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        shown = ", ".join(f"{k}: {v}" for k, v in metrics.items())
        entries.append(
            f"  - name: {name}\n"
            f"    embedded: checkpoints/{name}\n"
            f"    sha256: {sha}\n"
            f"    recipe: {recipe}\n"
            f"    dataset: {DATASET}\n"
            f"    split: \"{SPLIT}\"\n"  # quoted: the text holds a colon
            f"    metrics: {{{shown}}}\n"
            f"    produced_by: >-\n      {produced_by}\n"
            f"    license: apache-2.0\n"
            f"    default: true\n"
        )
        print(f"{name}: {shown} -> {folder}")
    header = ("  # The speech demo's wav2vec 2.0 tiny models (scripts/release_speech_demo.py). Data: the package's "
              "embedded speech\n  # (derf_zoo/data/assets/speech/README.md: LibriVox/PocketSphinx BSD-2, alsa-utils "
              "GPL-2 clips).\n")  # fmt: skip
    out = args.dest / "speech_manifest_entries.yaml"
    out.write_text(header + "".join(entries))
    print(f"Manifest entries: {out}")


if __name__ == "__main__":
    main()
