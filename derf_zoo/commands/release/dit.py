"""``derf-zoo release dit``: the demo's digits DiTs, ``dit_nano_derf.digits`` and ``dit_nano_ln.digits``.

Each model is trained exactly as ``derf-zoo demo dit`` trains it (``recipes/dit/dit_nano_{derf,ln}_digits.yaml``
unchanged: seed 0, 60 epochs, final-epoch weights; the task keeps no EMA), exported as a Hub folder, reloaded from
that folder, and measured on the reloaded weights with the demo's own code:

- ``loss``: the held-out diffusion loss (epsilon MSE + VLB) over the 359 held-out digits, 8 seeded
  (timestep, noise) draws per image (``derf_zoo.commands.demo.dit.held_out_losses``, seed 0);
- ``fd`` and ``class_acc``: the demo's judge (the released ``vit_nano_ln.digits``) on 10 samples per class drawn
  with 250 DDPM steps, guidance 1, seed 0: the Fréchet distance of its pre-logit features to the held-out digits,
  and the share (%) it classifies as the class asked for. Not an Inception FID: Inception's weights cannot be
  downloaded here, and its features of 8x8 digits would mean little anyway.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from derf_zoo.commands.release._common import check_note, recipe_epochs, training_arguments
from derf_zoo.release import Release, publish

HELP = "retrain and release the demo's digits DiTs (dit_nano_{derf,ln}.digits)"
COMMENT = ("The demo's digits DiTs (`derf-zoo release dit`). Data: UCI handwritten digits (CC BY 4.0); fd / class_acc\n"
           "are the demo's judge (the released vit_nano_ln.digits), not an Inception FID.")  # fmt: skip
TAGS = ("derf", "ln")
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training_arguments(parser, "outputs/dit_release")


def names(args: argparse.Namespace) -> list[str]:
    return [f"dit_nano_{tag}.digits" for tag in TAGS]


def measure(model: torch.nn.Module) -> dict[str, float]:
    """The card's numbers for ``model``, computed with the demo's code (see the module docstring)."""
    from derf_zoo.commands.demo.dit import (
        SAMPLES_PER_CLASS,
        held_out_losses,
        judge,
        load_judge,
        real_reference,
        sample_grid,
    )
    from derf_zoo.data.generation import DigitsGenerationDataModule

    data = DigitsGenerationDataModule(img_size=8)
    data.setup("fit")
    model = model.eval()
    loss = float(held_out_losses(model, data.val_set).mean())
    _, _, held_out = real_reference()
    samples = sample_grid(model, SAMPLES_PER_CLASS)
    labels = torch.arange(model.num_classes).repeat_interleave(SAMPLES_PER_CLASS)
    judged = judge(load_judge(), samples, labels, held_out)
    return {"loss": round(loss, 4), "fd": round(float(judged["fd"]), 3), "class_acc": round(judged["class_acc"], 1)}


def release(args: argparse.Namespace) -> list[Release]:
    import derf_zoo
    from derf_zoo.commands.demo.dit import train_one
    from derf_zoo.hub import load_into

    releases = []
    for tag in TAGS:
        arch, recipe = f"dit_nano_{tag}", f"recipes/dit/dit_nano_{tag}_digits.yaml"
        name = f"{arch}.digits"
        run = train_one(tag, args.out, args.epochs, progress=False)
        # The released architecture with its defaults: loading strictly proves the recipe trained exactly it.
        model = derf_zoo.create_model(arch).eval()
        load_into(model, run.model.state_dict(), source=str(run.checkpoint))
        with tempfile.TemporaryDirectory() as tmp:  # measure what users will load, not the in-memory copy
            exported = derf_zoo.from_pretrained(model.save_pretrained(Path(tmp) / name, name=name))
            metrics = measure(exported)
        produced_by = (
            f"trained by derf_zoo ({recipe}, seed 0, {recipe_epochs(recipe.removeprefix('recipes/'), args.epochs)} "
            f"epochs, batch 64, AdamW lr 2e-3, {os.cpu_count()}-core CPU, {run.seconds:.0f} s; `derf-zoo release "
            f"dit`); final-epoch weights, no EMA; held-out diffusion loss {metrics['loss']:.4f}, judge Fréchet "
            f"distance {metrics['fd']:.3f}, class match {metrics['class_acc']:.1f}% (protocol on the card)"
            f"{check_note(args.epochs)}"
        )
        releases.append(publish(model, args.dest, name, recipe=recipe, dataset=DATASET, split=SPLIT, metrics=metrics,
                                produced_by=produced_by, eval_protocol=PROTOCOL, overwrite=args.overwrite))
    return releases
