"""Train, export and measure the demo's digits DiTs: ``dit_nano_derf.digits`` and ``dit_nano_ln.digits``.

Each model is trained exactly as ``derf-zoo demo dit`` trains it (``recipes/dit/dit_nano_{derf,ln}_digits.yaml``
unchanged: seed 0, 60 epochs, final-epoch weights; the task keeps no EMA), exported as a Hub folder, reloaded from
that folder, and measured on the reloaded weights with the demo's own code:

- ``loss``: the held-out diffusion loss (epsilon MSE + VLB) over the 359 held-out digits, 8 seeded
  (timestep, noise) draws per image (``derf_zoo.commands.demo.dit.held_out_losses``, seed 0);
- ``fd`` and ``class_acc``: the demo's judge (the released ``vit_nano_ln.digits``) on 10 samples per class drawn
  with 250 DDPM steps, guidance 1, seed 0: the Fréchet distance of its pre-logit features to the held-out digits,
  and the share (%) it classifies as the class asked for. Not an Inception FID: Inception's weights cannot be
  downloaded here, and its features of 8x8 digits would mean little anyway.

    python scripts/release_dit_digits.py [--out outputs/dit_release] [--dest derf_zoo/checkpoints] [--overwrite]

Writes ``<dest>/dit_nano_{derf,ln}.digits/`` (config.json, model.safetensors, README.md) and
``<dest>/dit_digits_manifest_entries.yaml`` (the entries to paste into derf_zoo/checkpoints/manifest.yaml,
sha256 pinned). A release folder that already exists is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import torch

TAGS = ("derf", "ln")
RECIPE = "recipes/dit/dit_nano_{tag}_digits.yaml"
DATASET = "sklearn-digits"
SPLIT = "validation (fixed stratified 20%, split_seed 0, 359 images)"
PROTOCOL = (
    "loss: diffusion loss (epsilon MSE + VLB, the training objective) on the 359 held-out digits (8x8, scaled "
    "to [-1, 1]), 8 (timestep, noise) draws per image from torch.Generator seed 0 "
    "(derf_zoo.commands.demo.dit.held_out_losses); fd / class_acc: 10 samples per class (250 DDPM steps, "
    "guidance 1, seed 0) judged by the released vit_nano_ln.digits: Fréchet distance of its pre-logit features "
    "to the held-out digits (an FID with that ViT in place of Inception; comparable only between these "
    "models) and the share (%) it classifies as the class asked for. No Inception FID: its weights are not "
    "available offline"
)


def measure(model: torch.nn.Module) -> dict[str, float]:
    """The card's numbers for ``model``, computed with the demo's code (see the module docstring)."""
    from derf_zoo.commands.demo.dit import held_out_losses, sample_grid
    from derf_zoo.data.generation import DigitsGenerationDataModule
    from derf_zoo.diffusion.digits_judge import SAMPLES_PER_CLASS, judge, load_judge, real_reference

    data = DigitsGenerationDataModule(img_size=8)
    data.setup("fit")
    model = model.eval()
    loss = float(held_out_losses(model, data.val_set).mean())
    _, _, held_out = real_reference()
    samples = sample_grid(model, SAMPLES_PER_CLASS)
    labels = torch.arange(model.num_classes).repeat_interleave(SAMPLES_PER_CLASS)
    judged = judge(load_judge(), samples, labels, held_out)
    return {"loss": round(loss, 4), "fd": round(float(judged["fd"]), 3), "class_acc": round(judged["class_acc"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/dit_release"), help="training runs")
    parser.add_argument("--dest", type=Path, default=Path("derf_zoo/checkpoints"))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe (only for a quick check)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing release folders (default: refuse)")
    args = parser.parse_args()

    import derf_zoo
    from derf_zoo.commands.demo.dit import train_one
    from derf_zoo.hub import load_into

    entries = []
    for tag in TAGS:
        arch, recipe = f"dit_nano_{tag}", RECIPE.format(tag=tag)
        name = f"{arch}.digits"
        run = train_one(tag, args.out, args.epochs, progress=False)
        # The released architecture with its defaults: loading strictly proves the recipe trained exactly it.
        model = derf_zoo.create_model(arch).eval()
        load_into(model, run.model.state_dict(), source=str(run.checkpoint))
        with tempfile.TemporaryDirectory() as tmp:  # measure what users will load, not the in-memory copy
            exported = derf_zoo.from_pretrained(model.save_pretrained(Path(tmp) / name, name=name))
            metrics = measure(exported)
        epochs = args.epochs or 60
        produced_by = (
            f"trained by derf_zoo ({recipe}, seed 0, {epochs} epochs, batch 64, AdamW lr 2e-3, 2-core CPU, "
            f"{run.seconds:.0f} s; scripts/release_dit_digits.py); final-epoch weights, no EMA; held-out diffusion "
            f"loss {metrics['loss']:.4f}, judge Fréchet distance {metrics['fd']:.3f}, class match "
            f"{metrics['class_acc']:.1f}% (protocol on the card)"
        )
        folder = model.save_pretrained(
            args.dest / name, name=name, metrics=metrics, dataset=DATASET, split=SPLIT, recipe=recipe,
            produced_by=produced_by, eval_protocol=PROTOCOL, license="apache-2.0",
            overwrite=args.overwrite,
        )  # fmt: skip
        sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        metric_text = ", ".join(f"{k}: {v}" for k, v in metrics.items())
        entries.append(
            f"  - name: {name}\n"
            f"    embedded: checkpoints/{name}\n"
            f"    sha256: {sha}\n"
            f"    recipe: {recipe}\n"
            f"    dataset: {DATASET}\n"
            f"    split: {SPLIT}\n"
            f"    metrics: {{{metric_text}}}\n"
            f"    produced_by: >-\n      {produced_by}\n"
            f"    license: apache-2.0\n"
            f"    default: true\n"
        )
        print(f"{name}: {metric_text} -> {folder}", flush=True)
    header = "# Entries for derf_zoo/checkpoints/manifest.yaml. Data: UCI handwritten digits (CC BY 4.0).\n"
    out = args.dest / "dit_digits_manifest_entries.yaml"
    out.write_text(header + "weights:\n" + "".join(entries))
    print(f"Manifest entries: {out}")


if __name__ == "__main__":
    main()
