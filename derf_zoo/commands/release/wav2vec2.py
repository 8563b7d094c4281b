"""``derf-zoo release wav2vec2``: the speech demo's ``wav2vec2_tiny_{derf,ln}.speech``.

Trains both with the demo's recipes (``recipes/wav2vec2/wav2vec2_tiny_{derf,ln}_speech.yaml``, seed 0, exactly what
``derf-zoo demo wav2vec2`` runs), exports each final checkpoint with ``derf-zoo export``'s code path (a Hub folder
re-measured with ``--eval``, in OUT/export), reloads the exported weights, measures the demo's headline on them (the
4 embedded validation clips, each whole, 8 fixed mask draws: seeds 0-7) and writes the release folders with those
numbers. About 1.5 minutes of CPU time in all.
"""

from __future__ import annotations

import argparse

from derf_zoo.commands.release._common import (
    check_exports_free,
    check_note,
    recipe_epochs,
    trained_steps,
    training_arguments,
)
from derf_zoo.release import Release, paired_noise, publish

HELP = "retrain and release the speech demo's tiny wav2vec 2.0s (wav2vec2_tiny_{derf,ln}.speech)"
COMMENT = ("The speech demo's wav2vec 2.0 tiny models (`derf-zoo release wav2vec2`). Data: the package's embedded "
           "speech\n(derf_zoo/data/assets/speech/README.md: LibriVox/PocketSphinx BSD-2, alsa-utils GPL-2 clips).")
TAGS = ("derf", "ln")
DATASET = "derf_zoo-embedded-speech"
SPLIT = "validation (embedded fixed split: 4 clips, 7.6 s, each whole; 8 fixed mask draws, seeds 0-7)"
PROTOCOL = (
    "Pretraining loss (contrastive + 0.1 diversity + 10 feature penalty) in bits per masked frame, as fairseq "
    "reports it: each of the 4 embedded validation clips alone and whole, eval mode, span masks and "
    "negatives drawn from torch.Generator seeds 0-7 (derf_zoo.commands.demo.speech.clip_losses); the mean over "
    "clips of each clip's summed bits / summed masked frames. Codebook perplexity: fairseq's prob_perplexity "
    "(soft) and code_perplexity (distinct argmax codes), of 2 x 32 entries, averaged over clips and draws."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training_arguments(parser, "outputs/release_speech")


def names(args: argparse.Namespace) -> list[str]:
    return [f"wav2vec2_tiny_{tag}.speech" for tag in TAGS]


def release(args: argparse.Namespace) -> list[Release]:
    import torch

    import derf_zoo
    from derf_zoo.commands.demo import speech
    from derf_zoo.tasks.export import export_checkpoint

    check_exports_free(args.out / "export", names(args), args.overwrite)
    runs = {tag: speech.train_one(tag, args.out, args.epochs, progress=False) for tag in TAGS}
    gap = paired_noise(runs["derf"].clips.per_clip(), runs["ln"].clips.per_clip())
    releases = []
    for tag, run in runs.items():
        name, recipe = f"wav2vec2_tiny_{tag}.speech", f"recipes/wav2vec2/wav2vec2_tiny_{tag}_speech.yaml"
        exported, recorded = export_checkpoint(run.checkpoint, args.out / "export" / name, evaluate=True, name=name,
                                               recipe=recipe, dataset=DATASET, overwrite=args.overwrite)  # fmt: skip
        model = derf_zoo.from_pretrained(exported).eval()
        clips = speech.clip_losses(model)
        # the export holds the trained weights (float32 sums: thread counts change the last bits)
        torch.testing.assert_close(clips.loss, run.clips.loss, rtol=1e-5, atol=1e-5)
        metrics = {"loss": round(clips.mean, 4), "perplexity": round(float(clips.perplexity.mean()), 2),
                   "code_perplexity": round(float(clips.code_perplexity.mean()), 2)}  # fmt: skip
        epochs = recipe_epochs(recipe.removeprefix("recipes/"), args.epochs)
        produced_by = (
            f"trained by derf_zoo: `derf-zoo demo wav2vec2` (recipe above, seed 0, {epochs} epochs = "
            f"{trained_steps(run.checkpoint)} updates on the 38 s of embedded training speech, CPU, "
            f"{run.cpu_seconds:.0f} s CPU time), final weights exported with `derf-zoo export`; validation loss in the "
            f"run's own loader (centred crops, batch masks): {recorded['loss']:.3f} bits; Derf minus LayerNorm on the "
            f"clips above: {runs['derf'].clips.mean - runs['ln'].clips.mean:+.3f} ± {gap:.3f} bits (2 SE over the 4 "
            f"clips, paired){check_note(args.epochs)}"
        )
        releases.append(publish(model, args.dest, name, recipe=recipe, dataset=DATASET, split=SPLIT, metrics=metrics,
                                produced_by=produced_by, eval_protocol=PROTOCOL, task_type="feature-extraction",
                                overwrite=args.overwrite))  # fmt: skip
    return releases
