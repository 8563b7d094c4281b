"""``derf-zoo release fmnist``: the better Derf and the LayerNorm ViT-mini of a finished Fashion-MNIST benchmark.

Which Derf: of the grid's two Derf rows (alpha 0.5 and alpha=auto), the one with the higher mean test top-1
over seeds. Which weights: for that row and for LayerNorm, the run whose test top-1 is the median over its
seeds (a representative run, not the luckiest one); the card gives that run's number and the mean ± SE.
No retraining: ``derf-zoo benchmark fmnist`` keeps every run's final weights. Writes ``vit_mini_{derf,ln}.fmnist``
as the registered architectures ``vit_mini_derf`` / ``vit_mini_ln``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from derf_zoo.release import Release, publish

HELP = "release the median runs of the best Derf and of LayerNorm from `derf-zoo benchmark fmnist`"
COMMENT = ("Fashion-MNIST benchmark models (`derf-zoo release fmnist`; benchmarks/results/fmnist_cpu.md). Data: "
           "Zalando, MIT.")  # fmt: skip
TAGS = ("derf", "ln")
DERF_ROWS = ("derf", "derf_auto")
RECIPE = "recipes/vit/vit_mini_fmnist.yaml"
DATASET = "fashion_mnist"
SPLIT = "test (official 10,000 images)"
PROTOCOL = (
    "test top-1 on the official 10,000 Fashion-MNIST test images after the last epoch (no selection on test); "
    "inputs 28x28 grey scaled to [0, 1] and normalised with mean 0.2860, std 0.3530, no resizing"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_fmnist"),
                        help="the finished benchmark's folder (default: outputs/benchmark_fmnist)")  # fmt: skip


def names(args: argparse.Namespace) -> list[str]:
    return [f"vit_mini_{tag}.fmnist" for tag in TAGS]


def median_run(runs: list[dict]) -> dict:
    """The run whose test top-1 is the median of ``runs`` (the lower one of an even count; ties by seed)."""
    ranked = sorted(runs, key=lambda r: (r["test_acc1"], r["seed"]))
    return ranked[(len(ranked) - 1) // 2]


def release(args: argparse.Namespace) -> list[Release]:
    import derf_zoo
    from derf_zoo.commands.benchmark import BASELINE, LABELS, load_results, summarise
    from derf_zoo.hub import load_into

    results = load_results(args.out)
    rows = {row["norm"]: row for row in summarise(results)}
    derf_rows = [k for k in DERF_ROWS if k in rows]
    if BASELINE not in rows or not derf_rows:
        raise FileNotFoundError(f"{args.out} has no finished LayerNorm and Derf runs yet (`derf-zoo benchmark fmnist "
                                f"--out {args.out}` makes them).")  # fmt: skip
    best_derf = max(derf_rows, key=lambda k: rows[k]["acc"][0])
    releases = []
    for key, tag in ((best_derf, "derf"), (BASELINE, "ln")):
        runs = [r for r in results if r["norm"] == key]
        chosen = median_run(runs)
        mean, se = rows[key]["acc"]
        name = f"vit_mini_{tag}.fmnist"
        run = derf_zoo.from_pretrained(args.out / "runs" / key / f"seed{chosen['seed']}" / "model")
        # The released architecture, built with the run's arguments (the same values for the benchmark's recipe).
        model = derf_zoo.create_model(f"vit_mini_{tag}", **run.model_args).eval()
        load_into(model, run.state_dict(), source=f"{key} seed {chosen['seed']}")
        spread = f"{100 * mean:.2f} ± {100 * se:.2f} (SE) over {len(runs)} seeds"
        produced_by = (
            f"trained by derf_zoo: `derf-zoo benchmark fmnist`, {LABELS.get(key, key)} (`{chosen['spec']}`), "
            f"seed {chosen['seed']} of {len(runs)} (the median run), {chosen['epochs']} epochs on "
            f"{chosen['n_train']:,} training images, final-epoch weights; the row's test top-1 is {spread}"
        )
        diff = rows[key].get("diff")
        if diff:
            produced_by += (f", {100 * diff['mean']:+.2f} ± {100 * diff['se']:.2f} points against LayerNorm on the "
                            f"same {diff['n']} seeds (benchmarks/results/fmnist_cpu.md)")  # fmt: skip
        releases.append(publish(model, args.dest, name, recipe=RECIPE, dataset=DATASET, split=SPLIT,
                                metrics={"acc1": round(100 * chosen["test_acc1"], 2)}, produced_by=produced_by,
                                eval_protocol=PROTOCOL, overwrite=args.overwrite))  # fmt: skip
        print(f"{name}: {key} seed {chosen['seed']}, test top-1 {100 * chosen['test_acc1']:.2f}% (row: {spread})")
    return releases
