"""The demo's speech part: a tiny wav2vec 2.0 with Derf and LayerNorm, self-supervised on real speech.

The runs use ``recipes/wav2vec2/wav2vec2_tiny_{derf,ln}_speech.yaml`` unchanged: 0.31M parameters pretrained on
the 38 s of training speech embedded in the package (LibriVox, PocketSphinx "cards" and alsa voice clips), same
data, schedule and seed. The headline number is the pretraining loss (contrastive + 0.1 diversity + 10 feature
penalty, bits per masked frame, as fairseq reports it and the paper compares) of each trained model on the 4
held-out clips, each clip whole, under ``MASK_SEEDS`` fixed draws of span masks and negatives: the same draws for
both models, so the comparison is paired. At this scale the paper's LibriSpeech claim (Base 1.95 -> 1.93) is not
tested; the part shows the whole pipeline working and how far one seed's gap can be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from derf_zoo.commands._figures import pyplot, save
from derf_zoo.commands.demo.part import PartResult, choose_norms, final_site_saturation, saturation_text, verdict
from derf_zoo.norms.sites import site_alphas
from derf_zoo.recipes import recipe_path
from derf_zoo.release import one_thread, paired_noise, train_recipe
from derf_zoo.release.measures import MASK_SEEDS, ClipLosses, clip_losses, validation_clips  # noqa: F401 (cards)

NORMS = {"derf": "Derf", "ln": "LayerNorm"}
CURVES = ("val/loss", "val/perplexity", "train/loss_epoch")


@dataclass
class RunResult:
    norm: str
    model: torch.nn.Module
    clips: ClipLosses
    alphas: dict[str, float]
    seconds: float
    cpu_seconds: float
    checkpoint: Path
    curves: dict[str, list[float]] = field(default_factory=dict)
    final_saturated: tuple[str, float] | None = None  # (last point-wise site, its saturated fraction)


def train_one(tag: str, out: Path, epochs: int | None, progress: bool) -> RunResult:
    with one_thread():
        stem = f"wav2vec2_tiny_{tag}_speech"
        run = train_recipe(recipe_path(f"wav2vec2/{stem}.yaml"), out / stem, epochs=epochs, progress=progress,
                           curves=CURVES)
        final_saturated = final_site_saturation(run.cli.model, run.cli.datamodule.val_dataloader())
        model = run.cli.model.model.cpu().eval()
        clips = clip_losses(model)
    return RunResult(norm=NORMS[tag], model=model, clips=clips, alphas=site_alphas(model), seconds=run.seconds,
                     cpu_seconds=run.cpu_seconds, curves=run.curves, final_saturated=final_saturated,
                     checkpoint=run.checkpoint)  # fmt: skip


def print_results(results: list[RunResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    n_clips, n_seeds = results[0].clips.loss.shape
    table = Table(title=f"wav2vec 2.0 tiny on real speech (38 s train, {n_clips} held-out clips x {n_seeds} fixed "
                        "mask draws), same recipe and seed")  # fmt: skip
    table.add_column("norm", style="bold")
    table.add_column("val loss (bits / masked frame)", justify="right")
    table.add_column("codebook perplexity (soft / codes used, of 64)", justify="right")
    table.add_column("final alpha (attn / mlp / encoder)", justify="right")
    table.add_column("last site saturated", justify="right")
    table.add_column("wall / CPU time", justify="right")
    for r in results:
        alphas = " / ".join(f"{r.alphas[s]:.2f}" for s in ("attn", "mlp", "encoder") if s in r.alphas) or "-"
        table.add_row(r.norm, f"{r.clips.mean:.3f}", f"{float(r.clips.perplexity.mean()):.1f} / "
                      f"{float(r.clips.code_perplexity.mean()):.1f}", alphas, saturation_text(r.final_saturated),
                      f"{r.seconds:.0f} s / {r.cpu_seconds:.0f} s")  # fmt: skip
    Console(width=max(Console().width, 120)).print(table)


def plot_curves(results: list[RunResult], path: Path) -> Path:
    plt = pyplot()
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        for ax, key in ((ax_loss, "val/loss"), (ax_ppl, "val/perplexity")):
            values = r.curves.get(key, [])
            ax.plot(range(1, len(values) + 1), values, label=r.norm, lw=1.8)
    ax_loss.set(xlabel="epoch", ylabel="bits per masked frame", title="validation loss (one seeded mask draw)")
    ax_ppl.set(xlabel="epoch", ylabel="perplexity (of 2 x 32 codes)", title="validation codebook perplexity")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"wav2vec 2.0 tiny on embedded speech: {' vs '.join(r.norm for r in results)} "
                 "(recipes/wav2vec2/wav2vec2_tiny_*_speech.yaml)")  # fmt: skip
    return save(fig, path)


def run_part(out: Path, epochs: int | None = None, norms: list[str] | None = None, progress: bool = True
             ) -> PartResult:  # fmt: skip
    """Pretrain the tiny wav2vec 2.0 recipes with Derf and LayerNorm, print their table and verdict, plot curves.

    Raises:
        ValueError: a norm this part has no recipe for, or not both Derf and LayerNorm.
    """
    norms = choose_norms("wav2vec 2.0", norms, NORMS)
    print(f"Speech part: pretraining {len(norms)} tiny wav2vec 2.0 models on 38 s of embedded real speech, one "
          "after the other (under a minute each on 2 CPU cores).")  # fmt: skip
    results: list[RunResult] = []
    for tag in norms:
        print(f"\n== {NORMS[tag]}: recipes/wav2vec2/wav2vec2_tiny_{tag}_speech.yaml")
        results.append(train_one(tag, out, epochs, progress=progress))
    print()
    print_results(results)
    by_norm = {r.norm: r for r in results}
    derf, ln = by_norm["Derf"], by_norm["LayerNorm"]
    n_clips, n_seeds = derf.clips.loss.shape
    # The loss is deterministic given the masks and negatives, so the noise comes from which clips and draws were
    # scored. Each clip's difference is taken over all its draws first (the draws of one clip are not independent
    # samples of the population of clips), then paired over the clips: with 4 clips, 3 degrees of freedom, a coarse
    # estimate that covers neither the training seed nor other speech.
    result = PartResult(family="wav2vec 2.0", data=f"speech ({n_clips} val clips x {n_seeds} masks)",
                        metric="val loss (bits)", higher_is_better=False, derf=derf.clips.mean,
                        baseline_value=ln.clips.mean, noise=paired_noise(derf.clips.per_clip(), ln.clips.per_clip()))
    print(f"{verdict(result)}. Derf {result.derf:.3f} vs LayerNorm {result.baseline_value:.3f} bits per masked frame, "
          f"a gap of {result.baseline_value - result.derf:+.3f} (LayerNorm minus Derf) against a noise of "
          f"±{result.noise:.3f} (2 SE over the {n_clips} clips, paired, {n_seeds} mask draws each). One training "
          "seed per norm; the paper's LibriSpeech claim is not tested at this scale.")  # fmt: skip
    picture = plot_curves(results, out / "curves.png")
    result.pictures.append(picture)
    print(f"\nValidation curves: {picture}")
    print("Checkpoints (Lightning; `derf-zoo export` turns one into a Hub folder):")
    for r in results:
        print(f"  {r.norm:<10} {r.checkpoint}")
    return result
