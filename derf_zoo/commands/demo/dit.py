"""The demo's DiT part: DiT-nano with Derf and LayerNorm, class-conditional diffusion on real handwritten digits.

The runs use ``recipes/dit/dit_nano_{derf,ln}_digits.yaml`` unchanged. The headline number is the diffusion loss
(epsilon MSE + VLB, the training objective) of each trained model on the held-out digits, with the SAME noise
and timesteps for both models (several draws per image), so the comparison is paired. Its noise is two standard
errors of the mean paired difference: it covers the images and the draws, not the training seed.

The samples of the grids (250 DDPM steps, the paper's sampler, 10 per class) are also judged by the released digits
ViT (``vit_nano_ln.digits``, trained on the same training split): the Fréchet distance between its pre-logit
features of the samples and of the held-out real digits (an FID with that ViT in place of Inception; comparable
only within this demo), and the share of samples it classifies as the class asked for. For scale, the same two
numbers for 10 real training digits per class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from derf_zoo.commands._figures import pyplot, save
from derf_zoo.commands.demo.part import PartResult, choose_norms, final_site_saturation, saturation_text
from derf_zoo.data.generation import to_pixels
from derf_zoo.diffusion import ClassifierFreeGuidance, create_diffusion

# the judge of the samples is library code (derf-zoo release and the cards use it too); re-exported for them
from derf_zoo.diffusion.digits_judge import (  # noqa: F401
    JUDGE,
    JUDGE_SIZE,
    SAMPLES_PER_CLASS,
    JudgeFeatures,
    judge,
    load_judge,
    real_reference,
)
from derf_zoo.norms.sites import site_alphas
from derf_zoo.recipes import recipe_path
from derf_zoo.release import paired_noise, train_recipe
from derf_zoo.release.measures import DRAWS_PER_IMAGE, held_out_losses

NORMS = {"derf": "Derf", "ln": "LayerNorm"}
#: Sampler of the pictures: the paper's 250 DDPM steps, guidance scale 1 (its FID setting: no guidance).
SAMPLE_RESPACING = "250"
CFG_SCALE = 1.0
#: Draws (timestep, noise) per held-out image for the headline loss.


@dataclass
class RunResult:
    norm: str
    model: torch.nn.Module
    val_losses: torch.Tensor  # per held-out image, averaged over the draws
    eval_train_loss: float
    alphas: dict[str, float]
    seconds: float
    checkpoint: Path
    samples: torch.Tensor | None = None  # (classes * SAMPLES_PER_CLASS, 1, 8, 8) in [0, 1], class-major
    judged: dict[str, float] = field(default_factory=dict)  # {"fd": ..., "class_acc": ... (%)}
    final_saturated: tuple[str, float] | None = None  # (last point-wise site, its saturated fraction)


def train_one(tag: str, out: Path, epochs: int | None, progress: bool) -> RunResult:
    run = train_recipe(recipe_path(f"dit/dit_nano_{tag}_digits.yaml"), out / f"dit_nano_{tag}_digits", epochs=epochs,
                       progress=progress)  # fmt: skip
    cli = run.cli
    final_saturated = final_site_saturation(cli.model, cli.datamodule.val_dataloader())
    model = cli.model.model.cpu().eval()
    return RunResult(
        norm=NORMS[tag],
        model=model,
        val_losses=held_out_losses(model, cli.datamodule.val_set, draws=DRAWS_PER_IMAGE),
        eval_train_loss=float(cli.model.eval_mode_train_loss),
        alphas=site_alphas(model),
        seconds=run.seconds,
        checkpoint=run.checkpoint,
        final_saturated=final_saturated,
    )


@torch.no_grad()
def sample_grid(model: torch.nn.Module, per_class: int = 10, seed: int = 0) -> torch.Tensor:
    """``per_class`` samples of every class, (classes * per_class, C, H, W) in [0, 1], class-major."""
    diffusion = create_diffusion(SAMPLE_RESPACING)
    classes = model.num_classes
    y = torch.arange(classes).repeat_interleave(per_class)
    shape = (len(y), model.in_channels, model.input_size, model.input_size)
    guided = ClassifierFreeGuidance(model, CFG_SCALE)
    x = diffusion.p_sample_loop(guided, shape, model_kwargs={"y": y}, generator=torch.Generator().manual_seed(seed))
    return to_pixels(x)


def print_judged(results: list[RunResult], reference: dict[str, float], held_out: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Samples judged by the released digits ViT ({JUDGE}): {SAMPLES_PER_CLASS} per class")
    table.add_column("samples", style="bold")
    table.add_column(f"Fréchet distance to the {held_out} held-out digits (ViT features)", justify="right")
    table.add_column("classified as the class asked for", justify="right")
    for r in results:
        table.add_row(f"DiT-nano {r.norm}", f"{r.judged['fd']:.2f}", f"{r.judged['class_acc']:.0f}%")
    table.add_row("real training digits (reference)", f"{reference['fd']:.2f}", f"{reference['class_acc']:.0f}%")
    Console(width=max(Console().width, 110)).print(table)


def plot_samples(results: list[RunResult], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 5))
    for ax, r in zip(axes if len(results) > 1 else [axes], results):
        images = r.samples if r.samples is not None else sample_grid(r.model, SAMPLES_PER_CLASS)
        per_class, classes = SAMPLES_PER_CLASS, r.model.num_classes
        cells = F.pad(images[:, 0], (1, 1, 1, 1))  # a blank (white) border around every sample
        side = cells.shape[-1]
        grid = cells.reshape(classes, per_class, side, side).permute(1, 2, 0, 3).reshape(per_class * side,
                                                                                         classes * side)
        ax.imshow(grid.numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{r.norm}: one column per class 0-9")
        ax.axis("off")
    fig.suptitle(f"DiT-nano samples ({SAMPLE_RESPACING} DDPM steps, guidance {CFG_SCALE:g}; "
                 "recipes/dit/dit_nano_*_digits.yaml)")  # fmt: skip
    return save(fig, path)


def print_results(results: list[RunResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    n = len(results[0].val_losses)
    table = Table(title=f"DiT-nano on real handwritten digits ({n} held-out 8x8 images), same recipe and seed")
    table.add_column("norm", style="bold")
    table.add_column("held-out diffusion loss", justify="right")
    table.add_column("eval-mode train loss", justify="right")
    table.add_column("final alpha (attn / mlp / final)", justify="right")
    table.add_column("final site saturated", justify="right")
    table.add_column("wall time", justify="right")
    for r in results:
        alphas = " / ".join(f"{r.alphas[s]:.2f}" for s in ("attn", "mlp", "final") if s in r.alphas) or "-"
        table.add_row(r.norm, f"{float(r.val_losses.mean()):.4f}", f"{r.eval_train_loss:.4f}", alphas,
                      saturation_text(r.final_saturated), f"{r.seconds:.0f} s")  # fmt: skip
    Console(width=max(Console().width, 110)).print(table)


def run_part(out: Path, epochs: int | None = None, norms: list[str] | None = None, progress: bool = True
             ) -> PartResult:  # fmt: skip
    """Train the DiT-nano recipes with Derf and LayerNorm, print their table, draw sample grids.

    Raises:
        ValueError: a norm this part has no recipe for, or not both Derf and LayerNorm.
    """
    norms = choose_norms("DiT", norms, NORMS)
    print(f"DiT part: training {len(norms)} DiT-nano diffusion models on scikit-learn's handwritten digits, one "
          "after the other (a few minutes each on a CPU core).")  # fmt: skip
    results: list[RunResult] = []
    for tag in norms:
        print(f"\n== {NORMS[tag]}: recipes/dit/dit_nano_{tag}_digits.yaml")
        results.append(train_one(tag, out, epochs, progress=progress))
    print()
    print_results(results)
    features = load_judge()
    real_x, real_y, held_out = real_reference()
    for r in results:
        r.samples = sample_grid(r.model, SAMPLES_PER_CLASS)
        labels = torch.arange(r.model.num_classes).repeat_interleave(SAMPLES_PER_CLASS)
        r.judged = judge(features, r.samples, labels, held_out)
    print()
    print_judged(results, judge(features, real_x, real_y, held_out), len(held_out))
    picture = plot_samples(results, out / "samples.png")
    print(f"\nSamples: {picture}")
    by_norm = {r.norm: r for r in results}
    derf, ln = by_norm["Derf"], by_norm["LayerNorm"]
    return PartResult(family="DiT", data=f"digits ({len(derf.val_losses)} val images)",
                      metric="val diffusion loss (x100)", higher_is_better=False,
                      derf=100 * float(derf.val_losses.mean()), baseline_value=100 * float(ln.val_losses.mean()),
                      noise=100 * paired_noise(derf.val_losses, ln.val_losses), pictures=[picture])  # fmt: skip
