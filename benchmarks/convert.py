"""LayerNorm weights -> Derf: teacher, naive conversion, fitted conversion, fitted + distilled, Derf from scratch.

For every family, the teacher is the zoo's released LayerNorm (RMSNorm for Caduceus) model, and every row is
measured on the same held-out items in the family's metric, with the paired noise against the teacher (two standard
errors of the per-item difference):

- ViT-mini on the 10,000 Fashion-MNIST test images (top-1, %);
- DiT-nano on the 360 held-out digits (diffusion loss x100, 8 seeded draws per image: the demo's protocol);
- wav2vec 2.0 tiny on the 4 held-out clips x 8 mask seeds (bits per masked frame: the demo's protocol);
- HyenaDNA-nano / Caduceus-nano on the held-out end of the E. coli genome (nats per base, fixed masks);
- GPT-2 nano on every held-out window of Tiny Shakespeare (nats per character: the demo's protocol; the noise here
  treats windows as independent, the demo's block noise is wider).

Rows: ``naive`` (every weight copied, alpha 0.5, shift 0), ``fitted`` (:func:`derf_zoo.norms.fit_pointwise_norms`,
no training), ``fitted + distilled`` at each budget (the family's ``*_derf_from_*`` recipe, ``--trainer.max_steps``),
``from scratch`` (the family's Derf recipe at the same number of steps). Records land one by one in
``convert.json`` (an interrupted run resumes where it stopped); ``--report-only`` renders ``convert.md``.

    python benchmarks/convert.py --families vit hyenadna --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from derf_zoo.recipes import recipe_path
from derf_zoo.tasks.distill import init_student, load_teacher, teacher_references

RESULTS = Path(__file__).parent / "results"


# ---- per-family held-out measures: one value per item, so two models pair item by item ----------------------


@torch.no_grad()
def _fmnist_correct(model: nn.Module) -> Tensor:
    from derf_zoo.data.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_fashion_mnist

    x, y = load_fashion_mnist(split="test")
    x = ((x.float() / 255 - FASHION_MNIST_MEAN[0]) / FASHION_MNIST_STD[0]).unsqueeze(1)
    model.eval()
    return torch.cat([(model(x[i:i + 1000]).argmax(-1) == y[i:i + 1000]).double() for i in range(0, len(y), 1000)])


def _recipe_data(recipe: str) -> object:
    """The DataModule of ``recipe`` (its ``data:`` section), set up for validation."""
    import importlib

    import yaml

    cfg = yaml.safe_load(recipe_path(recipe).read_text())["data"]
    module, _, name = cfg["class_path"].rpartition(".")
    data = getattr(importlib.import_module(module), name)(**(cfg.get("init_args") or {}))
    data.setup("validate")
    return data


def _digits_losses(model: nn.Module) -> Tensor:
    from derf_zoo.release.measures import held_out_losses

    data = _recipe_data("dit/dit_nano_ln_digits.yaml")
    return held_out_losses(model.eval(), data.val_set)


def _speech_bits(model: nn.Module) -> Tensor:
    from derf_zoo.release.measures import clip_losses

    return clip_losses(model.eval()).loss.mean(1)  # per clip, over the 8 mask seeds


@torch.no_grad()
def _genome_nats(model: nn.Module, recipe: str, mode: str) -> Tensor:
    from derf_zoo.tasks.dna_lm import lm_pair, lm_token_stats

    data = _recipe_data(recipe)
    generator = torch.Generator().manual_seed(0)
    model.eval()
    out = []
    for batch in data.val_dataloader():
        tokens = batch[0] if isinstance(batch, (tuple, list)) else batch
        for row in tokens:
            inputs, targets = lm_pair(row[None], mode, 0.15, generator)
            loss, _, n = lm_token_stats(model(inputs), targets)
            out.append(float(loss) / max(n, 1))
    return torch.tensor(out, dtype=torch.float64)


def _shakespeare_nats(model: nn.Module) -> Tensor:
    from derf_zoo.release.measures import held_out_windows, window_losses

    return window_losses(model.eval(), held_out_windows())


@dataclass(frozen=True)
class Family:
    name: str
    teacher: str
    distill_recipe: str
    scratch_recipe: str
    budgets: tuple[int, ...]  # optimizer steps of the distillation (and of the from-scratch run)
    measure: Callable[[nn.Module], Tensor]
    metric: str
    scale: float  # what the table shows per unit of the per-item value
    higher_is_better: bool
    dataset: str  # the manifest's name of the data
    split: str  # the held-out items, as a card names them
    calibration_batches: int = 4


FAMILIES = {
    "vit": Family("ViT-mini / Fashion-MNIST", "vit_mini_ln.fmnist", "vit/vit_mini_derf_from_ln_fmnist.yaml",
                  "vit/vit_mini_fmnist.yaml", (105, 422), _fmnist_correct, "test top-1 (%)", 100.0, True,
                  "fashion_mnist", "test (official 10,000 images)", 8),
    "dit": Family("DiT-nano / digits", "dit_nano_ln.digits", "dit/dit_nano_derf_from_ln_digits.yaml",
                  "dit/dit_nano_derf_digits.yaml", (90, 345), _digits_losses, "held-out diffusion loss (x100)",
                  100.0, False, "sklearn-digits", "validation (fixed stratified 20%, split_seed 0; 8 draws per image)"),
    "wav2vec2": Family("wav2vec 2.0 tiny / speech", "wav2vec2_tiny_ln.speech",
                       "wav2vec2/wav2vec2_tiny_derf_from_ln_speech.yaml", "wav2vec2/wav2vec2_tiny_derf_speech.yaml",
                       (25, 100), _speech_bits, "held-out bits per masked frame", 1.0, False,
                       "embedded speech (pocketsphinx-testdata)", "validation (4 clips x 8 mask seeds)"),
    "hyenadna": Family("HyenaDNA-nano / E. coli", "hyenadna_nano_ln.ecoli",
                       "hyenadna/hyenadna_nano_derf_from_ln_ecoli.yaml", "hyenadna/hyenadna_nano_derf_ecoli.yaml",
                       (20, 40), lambda m: _genome_nats(m, "hyenadna/hyenadna_nano_ln_ecoli.yaml", "causal"),
                       "held-out nats per base", 1.0, False, "ecoli", "validation (held-out end of the genome)"),
    "caduceus": Family("Caduceus-nano / E. coli", "caduceus_nano_rmsnorm.ecoli",
                       "caduceus/caduceus_nano_derf_from_rmsnorm_ecoli.yaml", "caduceus/caduceus_nano_derf_ecoli.yaml",
                       (20, 40), lambda m: _genome_nats(m, "caduceus/caduceus_nano_rmsnorm_ecoli.yaml", "masked"),
                       "held-out nats per masked base", 1.0, False, "ecoli",
                       "validation (held-out end of the genome, fixed masks)"),
    "gpt2": Family("GPT-2 nano / Tiny Shakespeare", "gpt2_nano_ln.shakespeare",
                   "gpt2/gpt2_nano_derf_from_ln_shakespeare.yaml", "gpt2/gpt2_nano_derf_shakespeare.yaml", (50, 100),
                   _shakespeare_nats, "held-out nats per character", 1.0, False, "tiny-shakespeare",
                   "validation (last 10 % of the characters; every 64-character window)"),
}


# ---- the rows -----------------------------------------------------------------------------------------------


def _train(recipe: str, steps: int, run_dir: Path, extra: list[str]) -> tuple[nn.Module, float]:
    """One run of ``recipe`` for exactly ``steps`` optimizer steps, without validation (the rows measure after)."""
    from derf_zoo.release import train_recipe

    run = train_recipe(recipe_path(recipe), run_dir, progress=False,
                       extra_args=["--trainer.max_epochs=-1", f"--trainer.max_steps={steps}",
                                   "--trainer.limit_val_batches=0", *extra])  # fmt: skip
    return run.cli.model.model.cpu().eval(), run.seconds


def _fitted(family: Family, teacher: nn.Module, naive: bool) -> nn.Module:
    from derf_zoo.norms import fit_pointwise_norms
    from derf_zoo.tasks.convert import calibration_from_recipe, student_of

    student = student_of(teacher, "derf")
    init_student(student, teacher)
    if not naive:
        args, kwargs = calibration_from_recipe(recipe_path(family.distill_recipe), student,
                                               family.calibration_batches)  # fmt: skip
        fit_pointwise_norms(student, teacher_references(student, teacher), forward=lambda m: m(*args, **kwargs))
    return student.eval()


def rows_for(key: str, runs: Path, done: dict[str, dict], save: Callable[[], None]) -> list[dict]:
    family = FAMILIES[key]
    teacher = load_teacher(family.teacher)
    reference = family.measure(teacher)
    plans: list[tuple[str, Callable[[], tuple[nn.Module, float]]]] = [
        ("teacher", lambda: (teacher, 0.0)),
        ("naive conversion", lambda: (_fitted(family, teacher, naive=True), 0.0)),
        ("fitted conversion", lambda: (_fitted(family, teacher, naive=False), 0.0)),
    ]
    for steps in family.budgets:
        plans.append((f"fitted + distilled, {steps} steps",
                      lambda s=steps: _train(family.distill_recipe, s, runs / f"{key}_distill_{s}", [])))
        plans.append((f"Derf from scratch, {steps} steps",
                      lambda s=steps: _train(family.scratch_recipe, s, runs / f"{key}_scratch_{s}", [])))
    rows = []
    for name, make in plans:
        record_key = f"{key}/{name}"
        if record_key in done:
            rows.append(done[record_key])
            continue
        model, seconds = make()
        values = family.measure(model)
        diff = values - reference
        row = {"family": family.name, "row": name, "metric": family.metric,
               "value": family.scale * float(values.mean()),
               "vs_teacher": family.scale * float(diff.mean()),
               "noise": family.scale * 2 * float(diff.std() / math.sqrt(len(diff))) if name != "teacher" else 0.0,
               "items": len(values), "train_seconds": round(seconds, 1), "higher_is_better": family.higher_is_better}
        done[record_key] = row
        save()  # each finished row is kept: an interrupted run resumes after it
        rows.append(row)
        print(f"{family.name:28s} {name:36s} {row['value']:9.4f}  vs teacher {row['vs_teacher']:+.4f} "
              f"(+-{row['noise']:.4f})", flush=True)
    return rows


def _row_order(row: dict) -> tuple:
    """teacher, naive, fitted, then each budget (distilled before from scratch), whatever order the rows landed in."""
    name = row["row"]
    fixed = {"teacher": 0, "naive conversion": 1, "fitted conversion": 2}
    if name in fixed:
        return (fixed[name], 0, 0)
    steps = int(name.rsplit(", ", 1)[1].split()[0])
    return (3, steps, 0 if name.startswith("fitted") else 1)


def render(records: dict[str, dict], machine: str) -> str:
    lines = ["# LayerNorm weights -> Derf: fitted conversion and distillation, every family", "",
             "Produced by `python benchmarks/convert.py` (records in `convert.json`). Teacher: the zoo's released "
             "LayerNorm model of each family (RMSNorm for Caduceus). Every row is measured on the same held-out items "
             "as its teacher; *noise* is two standard errors of the per-item difference to the teacher, so a "
             "|difference| below it is not separated from the teacher.", "", f"Machine: {machine}.", ""]
    by_family: dict[str, list[dict]] = {}
    for r in records.values():
        by_family.setdefault(r["family"], []).append(r)
    lines += ["## What it says", ""]
    ahead = []
    for family, rows in by_family.items():
        named = {r["row"]: r for r in rows}
        distilled = max((r for r in rows if r["row"].startswith("fitted + distilled")), key=_row_order, default=None)
        if distilled is None or "fitted conversion" not in named:
            continue
        steps = distilled["row"].rsplit(", ", 1)[1]
        scratch = named.get(f"Derf from scratch, {steps}")
        verdict = "within the noise of" if abs(distilled["vs_teacher"]) <= distilled["noise"] else (
            "better than" if (distilled["vs_teacher"] > 0) == distilled["higher_is_better"] else "behind")
        if verdict == "better than":
            ahead.append(family.split(" / ")[0])
        lines.append(f"- {family}: naive {named['naive conversion']['value']:.3f}, fitted "
                     f"{named['fitted conversion']['value']:.3f}, fitted + distilled ({steps}) "
                     f"{distilled['value']:.3f}, {verdict} the teacher's {named['teacher']['value']:.3f}"
                     + (f"; Derf from scratch with the same steps {scratch['value']:.3f}." if scratch else "."))
    lines += ["", "A distilled student trains for more steps than its teacher did; where one ends ahead of its teacher "
              f"({'here: ' + ', '.join(ahead) if ahead else 'none does here'}), that is the extra training, not the "
              "norm. The wav2vec 2.0 noise is over 4 held-out clips (wide); the GPT-2 noise treats windows as "
              "independent (the demo's block noise is wider).", ""]
    for family, rows in by_family.items():
        rows = sorted(rows, key=_row_order)
        lines += [f"## {family}: {rows[0]['metric']} ({'higher' if rows[0]['higher_is_better'] else 'lower'} is "
                  f"better, {rows[0]['items']} held-out items)", "",
                  "| row | value | vs teacher | noise (2 SE) | train time (s) |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['row']} | {r['value']:.3f} | {r['vs_teacher']:+.3f} | {r['noise']:.3f} | "
                  f"{r['train_seconds']:.0f} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=RESULTS, help="where convert.json and convert.md go")
    parser.add_argument("--runs", type=Path, default=Path("outputs/benchmark_convert"),
                        help="the training runs' folders (each keeps its last.ckpt: `derf-zoo release converted "
                             "FAMILY CKPT` releases the distilled one)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--machine", default="2-core x86 CPU shared with other jobs, torch 2.14.1, fp32")
    parser.add_argument("--report-only", action="store_true", help="render convert.md from convert.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.out / "convert.json"
    records = json.loads(path.read_text()) if path.is_file() else {}
    if not args.report_only:
        for key in args.families:
            torch.manual_seed(0)
            rows_for(key, args.runs, records, lambda: path.write_text(json.dumps(records, indent=1)))
    (args.out / "convert.md").write_text(render(records, args.machine))
    print(f"wrote {args.out / 'convert.md'}")


if __name__ == "__main__":
    main()
