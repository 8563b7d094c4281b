"""Turn a finished Fashion-MNIST benchmark into release folders: the better Derf and LayerNorm ViT-mini.

Which Derf: of the grid's two Derf rows (alpha 0.5 and alpha=auto), the one with the higher mean test top-1
over seeds. Which weights: for that row and for LayerNorm, the run whose test top-1 is the median over its
seeds (a representative run, not the luckiest one); the card gives that run's number and the mean ± SE.
No retraining: the benchmark keeps every run's final weights.

    python scripts/release_fmnist.py [--out outputs/benchmark_fmnist] [--dest derf_zoo/checkpoints]

Writes ``<dest>/vit_mini_{derf,ln}.fmnist/`` (config.json, model.safetensors, README.md) as the registered
architectures ``vit_mini_derf`` / ``vit_mini_ln``, and ``<dest>/fmnist_manifest_entries.yaml`` (the entries to
paste into derf_zoo/checkpoints/manifest.yaml, sha256 pinned).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from derf_zoo.commands.benchmark import BASELINE, LABELS, load_results, summarise

DERF_ROWS = ("derf", "derf_auto")
PROTOCOL = (
    "test top-1 on the official 10,000 Fashion-MNIST test images after the last epoch (no selection on test); "
    "inputs 28x28 grey scaled to [0, 1] and normalised with mean 0.2860, std 0.3530, no resizing"
)


def median_run(runs: list[dict]) -> dict:
    ranked = sorted(runs, key=lambda r: (r["test_acc1"], r["seed"]))
    return ranked[(len(ranked) - 1) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_fmnist"))
    parser.add_argument("--dest", type=Path, default=Path("derf_zoo/checkpoints"))
    args = parser.parse_args()

    import derf_zoo
    from derf_zoo.hub import load_into

    results = load_results(args.out)
    rows = {row["norm"]: row for row in summarise(results)}
    derf_rows = [k for k in DERF_ROWS if k in rows]
    if BASELINE not in rows or not derf_rows:
        raise SystemExit(f"{args.out} has no finished LayerNorm and Derf runs yet.")
    best_derf = max(derf_rows, key=lambda k: rows[k]["acc"][0])
    entries = []
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
        folder = model.save_pretrained(
            args.dest / name, name=name, metrics={"acc1": round(100 * chosen["test_acc1"], 2)},
            dataset="fashion_mnist", split="test (official 10,000 images)",
            recipe="recipes/vit/vit_mini_fmnist.yaml", produced_by=produced_by, eval_protocol=PROTOCOL,
            license="apache-2.0", overwrite=True,
        )  # fmt: skip
        sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
        entries.append(
            f"  - name: {name}\n"
            f"    embedded: checkpoints/{name}\n"
            f"    sha256: {sha}\n"
            f"    recipe: recipes/vit/vit_mini_fmnist.yaml\n"
            f"    dataset: fashion_mnist\n"
            f"    split: test (official 10,000 images)\n"
            f"    metrics: {{acc1: {100 * chosen['test_acc1']:.2f}}}\n"
            f"    produced_by: >-\n      {produced_by}\n"
            f"    license: apache-2.0\n"
            f"    default: true\n"
        )
        print(f"{name}: {key} seed {chosen['seed']}, test top-1 {100 * chosen['test_acc1']:.2f}% (row: {spread}) "
              f"-> {folder}")  # fmt: skip
    header = "# Entries for derf_zoo/checkpoints/manifest.yaml. Data: Fashion-MNIST (Zalando, MIT licence).\n"
    out = args.dest / "fmnist_manifest_entries.yaml"
    out.write_text(header + "weights:\n" + "".join(entries))
    print(f"Manifest entries: {out}")


if __name__ == "__main__":
    main()
