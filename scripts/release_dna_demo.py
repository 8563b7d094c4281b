"""Train, export and measure the DNA demo's pretrained models: the release folders of ``<arch>_<norm>.ecoli``.

For every model of the demo's DNA part (HyenaDNA nano with Derf and LayerNorm; Caduceus nano with Derf and RMSNorm
when that family is installed), this runs exactly what ``derf-zoo demo dna`` runs (the
``recipes/{hyenadna,caduceus}/*_ecoli.yaml`` pretraining, then the ``*_ecoli_vs_lambda.yaml`` fine-tuning from
its checkpoint, then the test split), exports the
pretrained LM's final-epoch weights, and re-measures them on the held-out E. coli windows the way the tests do
(``DNALanguageModeling.evaluate`` with the recipe's data and evaluation masks of seed 0).

    python scripts/release_dna_demo.py [--out outputs/release_dna] [--dest derf_zoo/checkpoints] [--families Caduceus]
        [--overwrite]

Writes ``<dest>/<arch>_<norm>.ecoli/`` (config.json, model.safetensors, README.md) and
``<out>/dna_manifest_entries.yaml`` (the entries to append to derf_zoo/checkpoints/manifest.yaml, sha256 pinned).
A release folder that already exists is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import yaml

DATASET = "ecoli-536-1mbp"


def recipe_data(recipe: Path) -> tuple[dict, str]:
    """The recipe's GenomeDataModule arguments and LM mode."""
    cfg = yaml.safe_load(recipe.read_text())
    return dict(cfg["data"]["init_args"]), cfg["model"]["init_args"]["mode"]


def measure(model, recipe: Path) -> tuple[dict[str, float], str]:
    """Loss, perplexity and per-base accuracy (percent) on the recipe's validation windows (masks: seed 0), and the
    split's description for the card."""
    from derf_zoo.data import GenomeDataModule
    from derf_zoo.tasks import DNALanguageModeling

    args, mode = recipe_data(recipe)
    data = GenomeDataModule(**args)
    data.setup("validate")
    split = (f"validation (last 10 % of the stored E. coli 536 sequence, {len(data.val_set)} fixed "
             f"{args['seq_len']}-base windows)")  # fmt: skip
    return DNALanguageModeling.evaluate(model, data.val_dataloader(), mode=mode, seed=0), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/release_dna"))
    parser.add_argument("--dest", type=Path, default=Path("derf_zoo/checkpoints"))
    parser.add_argument("--families", nargs="+", default=None, help="only these (HyenaDNA, Caduceus); default: all")
    parser.add_argument("--overwrite", action="store_true", help="replace existing release folders (default: refuse)")
    args = parser.parse_args()

    import torch

    import derf_zoo
    from derf_zoo.commands.demo import dna
    from derf_zoo.hub import load_into
    from derf_zoo.recipes import recipe_path
    from derf_zoo.tasks.checkpoint import load_lightning_checkpoint, network_weights

    torch.set_num_threads(1)  # as the demo part: bit-reproducible runs, and faster for these tiny models
    entries = []
    for demo_model in dna.available_models():
        if args.families and demo_model.family not in args.families:
            continue
        kmer = dna.kmer_reference(demo_model)
        for tag in ("derf", demo_model.baseline):
            run = dna.train_one(demo_model, tag, args.out, None, progress=False)
            arch = f"{demo_model.arch}_{tag}"
            name, recipe_name = f"{arch}.ecoli", f"{arch.split('_')[0]}/{arch}_ecoli.yaml"
            model = derf_zoo.create_model(arch).eval()
            load_into(model, network_weights(load_lightning_checkpoint(run.pretrain_checkpoint), None)[0],
                      source=str(run.pretrain_checkpoint))  # fmt: skip
            measured, split = measure(model, recipe_path(recipe_name))
            metrics = {k: round(v, 4) for k, v in measured.items()}
            produced_by = (
                f"trained by derf_zoo: `derf-zoo demo dna` / scripts/release_dna_demo.py, recipes/{recipe_name} "
                f"(seed 0), final-epoch weights; fine-tuned from them on E. coli vs lambda "
                f"(recipes/{recipe_name.replace('_ecoli.yaml', '_ecoli_vs_lambda.yaml')}): "
                f"val top-1 {100 * run.finetune_val_acc:.1f} % "
                f"({run.val_count} windows), test top-1 {100 * run.test_acc:.1f} % ({run.test_count} windows; a 3-mer "
                f"logistic regression on the same windows: {100 * kmer[0]:.1f} %)"
                + (f"; final norm site ({sat[0]}) saturated on {100 * sat[1]:.1f} % of a validation batch's inputs"
                   if (sat := run.final_saturated) is not None else "")
                + ("; re-released after issue 18: embedding std 0.32 and final-site alpha 0.1 keep the final Derf out "
                   "of the saturation that left the first release at chance" if tag == "derf" else
                   "; re-released after issue 18 with the same embedding std (0.32), paired with the Derf release")
            )
            folder = model.save_pretrained(
                args.dest / name, name=name, metrics=metrics, dataset=DATASET, split=split,
                recipe=f"recipes/{recipe_name}", produced_by=produced_by, license="apache-2.0",
                overwrite=args.overwrite,
                eval_protocol=("DNALanguageModeling.evaluate on the recipe's validation windows (fixed, "
                               "non-overlapping); loss in nats per predicted base, acc = per-base top-1 (%); masked "
                               "models: 15 % of bases masked with the masks of seed 0"),
            )  # fmt: skip
            sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
            metric_text = ", ".join(f"{k}: {v}" for k, v in metrics.items())
            entries.append(
                f"  - name: {name}\n"
                f"    embedded: checkpoints/{name}\n"
                f"    sha256: {sha}\n"
                f"    recipe: recipes/{recipe_name}\n"
                f"    dataset: {DATASET}\n"
                f"    split: {split}\n"
                f"    metrics: {{{metric_text}}}\n"
                f"    produced_by: >-\n      {produced_by}\n"
                f"    license: apache-2.0\n"
                f"    default: true\n"
            )
            print(f"{name}: {metric_text}; E. coli vs lambda test top-1 {100 * run.test_acc:.1f} % -> {folder}")
    header = ("# Entries for derf_zoo/checkpoints/manifest.yaml (append at the end). Data: E. coli 536 from Debian's "
              "bowtie-examples (NCBI RefSeq NC_008253.1), see derf_zoo/data/assets/dna/README.md.\n")  # fmt: skip
    out = args.out / "dna_manifest_entries.yaml"
    out.write_text(header + "weights:\n" + "".join(entries))
    print(f"Manifest entries: {out}")


if __name__ == "__main__":
    main()
