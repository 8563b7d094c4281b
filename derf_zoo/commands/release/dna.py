"""``derf-zoo release dna``: the DNA demo's pretrained models, ``<arch>_<norm>.ecoli``.

For every model of the demo's DNA part (HyenaDNA nano with Derf and LayerNorm; Caduceus nano with Derf and RMSNorm
when that family is installed), this runs exactly what ``derf-zoo demo dna`` runs (the
``recipes/{hyenadna,caduceus}/*_ecoli.yaml`` pretraining, then the ``*_ecoli_vs_lambda.yaml`` fine-tuning from its
checkpoint, then the test split, on one thread: bit-reproducible), releases the pretrained LM's final-epoch
weights, and re-measures them on the held-out E. coli windows the way the tests do (``DNALanguageModeling.evaluate``
with the recipe's data and evaluation masks of seed 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from derf_zoo.commands.release._common import check_note, training_arguments
from derf_zoo.release import Release, one_thread, publish

HELP = "retrain and release the DNA demo's pretrained nano models (<arch>_<norm>.ecoli)"
COMMENT = ("The demo's DNA language models (`derf-zoo release dna`; `derf-zoo demo dna` trains the same). Data: E. "
           "coli 536\nfrom Debian's bowtie-examples (NCBI RefSeq NC_008253.1), see derf_zoo/data/assets/dna/README.md.")
DATASET = "ecoli-536-1mbp"
PROTOCOL = ("DNALanguageModeling.evaluate on the recipe's validation windows (fixed, non-overlapping); loss in nats "
            "per predicted base, acc = per-base top-1 (%); masked models: 15 % of bases masked with the masks of "
            "seed 0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    training_arguments(parser, "outputs/release_dna")
    parser.add_argument("--families", nargs="+", default=None, help="only these (HyenaDNA, Caduceus); default: all")


def _models(args: argparse.Namespace) -> list:
    from derf_zoo.commands.demo import dna

    models = dna.available_models()
    unknown = sorted(set(args.families or ()) - {m.family for m in models})
    if unknown:
        raise ValueError(f"--families {unknown}: no such DNA demo model installed; valid: "
                         f"{', '.join(m.family for m in models)}.")  # fmt: skip
    return [m for m in models if not args.families or m.family in args.families]


def names(args: argparse.Namespace) -> list[str]:
    return [f"{m.arch}_{tag}.ecoli" for m in _models(args) for tag in ("derf", m.baseline)]


def measure(model, recipe: Path) -> tuple[dict[str, float], str]:
    """Loss, perplexity and per-base accuracy (percent) on the recipe's validation windows (masks: seed 0), and the
    split's description for the card."""
    from derf_zoo.data import GenomeDataModule
    from derf_zoo.tasks import DNALanguageModeling

    cfg = yaml.safe_load(recipe.read_text())
    data_args, mode = dict(cfg["data"]["init_args"]), cfg["model"]["init_args"]["mode"]
    data = GenomeDataModule(**data_args)
    data.setup("validate")
    split = (f"validation (last 10 % of the stored E. coli 536 sequence, {len(data.val_set)} fixed "
             f"{data_args['seq_len']}-base windows)")  # fmt: skip
    return DNALanguageModeling.evaluate(model, data.val_dataloader(), mode=mode, seed=0), split


def release(args: argparse.Namespace) -> list[Release]:
    with one_thread():  # as the demo part: bit-reproducible runs, and faster for these tiny models
        return _release(args)


def _release(args: argparse.Namespace) -> list[Release]:
    import derf_zoo
    from derf_zoo.commands.demo import dna
    from derf_zoo.hub import load_into
    from derf_zoo.recipes import recipe_path
    from derf_zoo.tasks.checkpoint import read_checkpoint

    releases = []
    for demo_model in _models(args):
        kmer = dna.kmer_reference(demo_model)
        for tag in ("derf", demo_model.baseline):
            run = dna.train_one(demo_model, tag, args.out, args.epochs, progress=False)
            arch = f"{demo_model.arch}_{tag}"
            name, recipe_name = f"{arch}.ecoli", f"{demo_model.recipe_dir}/{arch}_ecoli.yaml"
            model = derf_zoo.create_model(arch).eval()
            weights, _ = read_checkpoint(run.pretrain_checkpoint).network_weights()  # checksum verified
            load_into(model, weights, source=str(run.pretrain_checkpoint))
            measured, split = measure(model, recipe_path(recipe_name))
            produced_by = (
                f"trained by derf_zoo: `derf-zoo demo dna` / `derf-zoo release dna`, recipes/{recipe_name} (seed 0), "
                f"final-epoch weights; fine-tuned from them on E. coli vs lambda "
                f"(recipes/{recipe_name.replace('_ecoli.yaml', '_ecoli_vs_lambda.yaml')}): "
                f"val top-1 {100 * run.finetune_val_acc:.1f} % ({run.val_count} windows), test top-1 "
                f"{100 * run.test_acc:.1f} % ({run.test_count} windows; a 3-mer logistic regression on the same "
                f"windows: {100 * kmer[0]:.1f} %)"
                + (f"; final norm site ({sat[0]}) saturated on {100 * sat[1]:.1f} % of a validation batch's inputs"
                   if (sat := run.final_saturated) is not None else "") + check_note(args.epochs)
            )  # fmt: skip
            releases.append(publish(model, args.dest, name, recipe=f"recipes/{recipe_name}", dataset=DATASET,
                                    split=split, metrics={k: round(v, 4) for k, v in measured.items()},
                                    produced_by=produced_by, eval_protocol=PROTOCOL,
                                    overwrite=args.overwrite))  # fmt: skip
            print(f"{name}: E. coli vs lambda test top-1 {100 * run.test_acc:.1f} %")
    return releases
