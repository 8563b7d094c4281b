"""Run nano DNA recipes over seeds and print their held-out loss: the seed tables of issue 18.

Each run is the recipe unchanged except for the seed (``seed_everything`` and the data module's window seed, as in
``benchmarks/results/dna_saturation_probe.md``) and any ``--set`` overrides, on one thread (bit-reproducible), and
prints one JSON line with the recipe's ``val/loss`` (nats per base on the held-out end of the E. coli genome).

    python scripts/dna_recipe_seeds.py hyenadna/hyenadna_nano_derf_ecoli.yaml --seeds 0 1 2 3 4
    python scripts/dna_recipe_seeds.py hyenadna/hyenadna_nano_derf_ecoli.yaml --set model_args.head_bias=false
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="a packaged recipe, e.g. hyenadna/hyenadna_nano_derf_ecoli.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override under model.init_args (model_args.head_bias=false, ...)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("outputs/dna_recipe_seeds"))
    args = parser.parse_args()

    from derf_zoo.recipes import recipe_path
    from derf_zoo.release import one_thread, train_recipe

    extra = [f"--model.init_args.{item}" for item in args.overrides]
    tag = Path(args.recipe).stem + "".join(f"_{item}" for item in args.overrides)
    with one_thread():
        for seed in args.seeds:
            run = train_recipe(recipe_path(args.recipe), args.out / tag / f"seed{seed}", progress=False,
                               extra_args=[f"--seed_everything={seed}", f"--data.init_args.seed={seed}", *extra])
            metrics = run.cli.trainer.callback_metrics
            print(json.dumps({"recipe": args.recipe, "overrides": args.overrides, "seed": seed,
                              "val_loss": round(float(metrics["val/loss"]), 4)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
