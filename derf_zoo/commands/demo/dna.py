"""The demo's DNA part: tiny HyenaDNA (Derf vs LayerNorm) and tiny Caduceus (Derf vs RMSNorm) on real genomes.

Each model and norm pretrains on the embedded E. coli genome (``recipes/<family>/<arch>_<norm>_ecoli.yaml``: causal LM
for HyenaDNA, masked LM for Caduceus), then fine-tunes from that checkpoint to tell E. coli from phage lambda
(``..._ecoli_vs_lambda.yaml``), same recipe and seed for both norms of a model. The table gives the pretraining
validation loss and perplexity (held-out end of the genome), the pretrained model's final-site saturated fraction
(issue 18: a saturated final Derf is the trap that kept the first releases at chance) and the fine-tuned validation
and test top-1, beside a 3-mer logistic regression on the same windows (what composition alone gets); the verdict
compares test top-1 with the binomial noise of the test windows. Caduceus joins when its family is installed
(registered). This scale does not test the paper's GenomicBenchmarks claim (85.2 -> 85.7 HyenaDNA, 86.9 -> 87.3
Caduceus).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from derf_zoo.commands.demo.part import PartResult, final_site_saturation, saturation_text
from derf_zoo.recipes import recipe_path
from derf_zoo.release import binomial_noise, train_recipe, verdict_sentence


@dataclass(frozen=True)
class DemoModel:
    """One architecture of the part: its display name, registry stem and norms (``{recipe tag: display name}``)."""

    family: str
    arch: str
    norms: dict[str, str]
    baseline: str  # the tag of the family's default norm

    @property
    def recipe_dir(self) -> str:
        """The family's recipe folder (``hyenadna``, ``caduceus``)."""
        return self.arch.split("_")[0]


MODELS = (
    DemoModel("HyenaDNA", "hyenadna_nano", {"derf": "Derf", "ln": "LayerNorm"}, "ln"),
    DemoModel("Caduceus", "caduceus_nano", {"derf": "Derf", "rmsnorm": "RMSNorm"}, "rmsnorm"),
)
#: Extra trainer arguments for every run (the tests shrink the runs with them).
TRAINER_ARGS: list[str] = []


@dataclass
class RunResult:
    model: str
    norm: str
    val_loss: float
    val_perplexity: float
    val_base_acc: float
    finetune_val_acc: float
    test_acc: float
    val_count: int
    test_count: int
    seconds: float
    pretrain_checkpoint: Path
    final_saturated: tuple[str, float] | None = None  # the pretrained LM's last point-wise site on a val batch


def available_models() -> list[DemoModel]:
    """The part's models whose family is installed (Caduceus may be absent from an older install)."""
    from derf_zoo.models import list_models

    names = set(list_models())
    return [m for m in MODELS if all(f"{m.arch}_{tag}" in names for tag in m.norms)]


def train_one(model: DemoModel, tag: str, out: Path, epochs: int | None, progress: bool) -> RunResult:
    """Pretrain ``model`` with norm ``tag`` on E. coli, fine-tune it on E. coli vs lambda, test it."""
    stem = f"{model.arch}_{tag}"
    start = time.perf_counter()
    recipe = f"{model.recipe_dir}/{stem}_ecoli"
    pre = train_recipe(recipe_path(f"{recipe}.yaml"), out / f"{stem}_ecoli", epochs=epochs, progress=progress,
                       extra_args=TRAINER_ARGS).cli  # fmt: skip
    metrics = {k: float(v) for k, v in pre.trainer.callback_metrics.items()}
    final_saturated = final_site_saturation(pre.model, pre.datamodule.val_dataloader())
    checkpoint = Path(pre.trainer.checkpoint_callback.last_model_path)
    ft = train_recipe(recipe_path(f"{recipe}_vs_lambda.yaml"), out / f"{stem}_ecoli_vs_lambda", epochs=epochs,
                      progress=progress, extra_args=[f"--model.init_args.init_from={checkpoint}", *TRAINER_ARGS]).cli
    val_acc = float(ft.trainer.callback_metrics["val/acc1"])
    ft.trainer.test(ft.model, datamodule=ft.datamodule, verbose=False)
    return RunResult(
        model=model.family, norm=model.norms[tag], val_loss=metrics["val/loss"],
        val_perplexity=metrics["val/perplexity"], val_base_acc=metrics["val/acc"], finetune_val_acc=val_acc,
        test_acc=float(ft.trainer.callback_metrics["test/acc1"]), val_count=len(ft.datamodule.val_set),
        test_count=len(ft.datamodule.test_set), seconds=time.perf_counter() - start, pretrain_checkpoint=checkpoint,
        final_saturated=final_saturated,
    )  # fmt: skip


def kmer_reference(model: DemoModel, k: int = 3) -> tuple[float, int]:
    """``(test top-1, test windows)`` of a k-mer logistic regression on the windows of ``model``'s fine-tuning recipe
    (its EcoliVsLambdaDataModule arguments): what base composition alone gets on this split."""
    from derf_zoo.data.genomes import ecoli_vs_lambda
    from derf_zoo.data.kmer import kmer_baseline

    recipe = recipe_path(f"{model.recipe_dir}/{model.arch}_{model.baseline}_ecoli_vs_lambda.yaml")
    args = yaml.safe_load(recipe.read_text())["data"]["init_args"]
    window = args.get("window", 200)
    stride = args.get("stride") or max(1, window // 2)
    data = ecoli_vs_lambda(window, stride, tuple(args.get("fractions", (0.8, 0.1, 0.1))), args.get("block"))
    return kmer_baseline(data["train"], data["test"], k=k), len(data["test"])


def noise(a: RunResult, b: RunResult) -> float:
    """Two binomial standard errors of the difference of two test accuracies (fractions)."""
    return binomial_noise((a.test_acc, a.test_count), (b.test_acc, b.test_count))


def above_chance(r: RunResult) -> bool:
    """Whether a fine-tuned model's test top-1 exceeds the 50 % of a balanced two-class task by two standard errors."""
    return r.test_acc - 0.5 > 2 * math.sqrt(0.25 / r.test_count)


def learned_dna(r: RunResult) -> bool:
    """Whether pretraining beat the ln 4 nats per base of guessing A, C, G and T uniformly."""
    return r.val_loss < math.log(4) - 1e-3


def verdict(derf: RunResult, baseline: RunResult) -> str:
    """Which norm wins on test top-1, and whether the gap exceeds two standard errors of the difference; when
    neither model rose above chance, say that instead of naming a winner."""
    two_se = noise(derf, baseline)
    where = f"{derf.test_count} test windows"
    if not (above_chance(derf) or above_chance(baseline)):
        stuck = [r.norm for r in (derf, baseline) if not learned_dna(r)]
        why = (f"; {' and '.join(stuck)} pretraining did not beat ln 4 = {math.log(4):.4f} nats per base (no DNA "
               "learned beyond base frequencies)" if stuck else "")  # fmt: skip
        return (f"{derf.model}: neither model rose above chance on E. coli vs lambda ({100 * derf.test_acc:.1f}% and "
                f"{100 * baseline.test_acc:.1f}% test top-1, 50% ± {100 * 2 * math.sqrt(0.25 / derf.test_count):.1f}"
                f"){why}: this run cannot compare the norms.")  # fmt: skip
    return verdict_sentence((derf.norm, derf.test_acc), (baseline.norm, baseline.test_acc), two_se, where=where,
                            metric="test top-1", prefix=f"{derf.model}: ")


def pretraining_verdict(derf: RunResult, baseline: RunResult) -> str:
    """The pretraining comparison: held-out loss of both norms against each other and against ln 4 (chance)."""
    learned = [r.norm for r in (derf, baseline) if learned_dna(r)]
    stuck = [r.norm for r in (derf, baseline) if not learned_dna(r)]
    text = (f"{derf.model} pretraining: Derf {derf.val_loss:.4f} vs {baseline.norm} {baseline.val_loss:.4f} nats per "
            f"base held out (Derf {derf.val_loss - baseline.val_loss:+.4f}; ln 4 = {math.log(4):.4f} is chance)")
    if stuck:
        sat = "; ".join(f"{r.norm}'s final site {saturation_text(r.final_saturated)} saturated"
                        for r in (derf, baseline) if r.final_saturated is not None and not learned_dna(r))
        return text + f": {' and '.join(stuck)} did not learn beyond base frequencies{' (' + sat + ')' if sat else ''}."
    return text + f": both learned ({' and '.join(learned)} below ln 4)."


def print_results(results: list[RunResult], kmer: tuple[float, int] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    r0 = results[0]
    table = Table(title=f"DNA: pretraining on E. coli, then E. coli vs lambda ({r0.val_count} val / {r0.test_count} "
                  "test windows of 200 bases); same recipe and seed per model")  # fmt: skip
    for column in ("model", "norm", "pretrain val loss", "perplexity", "per-base acc", "final site saturated",
                   "fine-tune val top-1", "test top-1", "wall time"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("model", "norm") else "right")
    for r in results:
        table.add_row(r.model, r.norm, f"{r.val_loss:.4f}", f"{r.val_perplexity:.3f}", f"{100 * r.val_base_acc:.1f}%",
                      saturation_text(r.final_saturated), f"{100 * r.finetune_val_acc:.1f}%",
                      f"{100 * r.test_acc:.1f}%", f"{r.seconds:.0f} s")  # fmt: skip
    if kmer is not None:
        acc, n = kmer
        table.add_row("3-mer LR", "(k-mers)", "-", "-", "-", "-", "-", f"{100 * acc:.1f}%", "-")
        table.caption = (f"Test noise: 2 standard errors of a top-1 near 50 % on {n} windows = "
                         f"±{100 * 2 * math.sqrt(0.25 / n):.1f} points; ln 4 = {math.log(4):.4f} nats per base; "
                         "3-mer LR: a 3-mer logistic regression on the same windows.")
    console = Console(width=max(Console().width, 160))
    console.print(table)


def choose_dna_norms(norms: list[str] | None) -> None:
    """The DNA part always compares Derf with each model's default norm; other requests are refused."""
    if norms is None:
        return
    valid = {tag for m in MODELS for tag in m.norms}
    unknown = [n for n in norms if n not in valid]
    if unknown:
        raise ValueError(f"The DNA demo part has no recipe for norm(s) {unknown}; valid: {', '.join(sorted(valid))}.")


def run_part(out: Path, epochs: int | None = None, norms: list[str] | None = None, progress: bool = True
             ) -> list[PartResult]:  # fmt: skip
    """Pretrain and fine-tune every available model with Derf and its default norm; print the table.

    Returns:
        One :class:`PartResult` per model (metric: test top-1 on E. coli vs lambda).

    Raises:
        ValueError: a norm the part has no recipe for.
    """
    choose_dna_norms(norms)
    threads = torch.get_num_threads()
    # One thread: the nano models' operations are too small to split, and on the shared 2-core box two threads took
    # ~4x the CPU time of one (8.7 min wall vs ~2 min for this part). It also makes the runs bit-reproducible, so the
    # pretraining numbers match the released weights' cards.
    torch.set_num_threads(1)
    try:
        return _run_models(out, epochs, progress)
    finally:
        torch.set_num_threads(threads)


def _run_models(out: Path, epochs: int | None, progress: bool) -> list[PartResult]:
    models = available_models()
    print(f"DNA part: {', '.join(m.family for m in models)} nano models pretrain on the embedded E. coli genome, then "
          "fine-tune on E. coli vs phage lambda, Derf against each model's default norm.")  # fmt: skip
    results: list[RunResult] = []
    summary: list[PartResult] = []
    for model in models:
        by_tag = {}
        for tag in ("derf", model.baseline):
            recipes = f"recipes/{model.recipe_dir}/{model.arch}_{tag}_ecoli[_vs_lambda].yaml"
            print(f"\n== {model.family} + {model.norms[tag]}: {recipes}")
            by_tag[tag] = train_one(model, tag, out, epochs, progress)
            results.append(by_tag[tag])
        derf, base = by_tag["derf"], by_tag[model.baseline]
        summary.append(PartResult(
            family=model.family, data=f"E. coli vs lambda ({derf.test_count} test windows)", metric="test top-1 (%)",
            higher_is_better=True, derf=100 * derf.test_acc, baseline_value=100 * base.test_acc,
            noise=100 * noise(derf, base), baseline=base.norm,
            own_verdict=None if above_chance(derf) or above_chance(base) else "both at chance: no comparison",
        ))  # fmt: skip
    print()
    kmer = kmer_reference(models[0]) if models else None
    print_results(results, kmer)
    for model in models:
        derf, base = (next(r for r in results if r.model == model.family and r.norm == model.norms[t])
                      for t in ("derf", model.baseline))  # fmt: skip
        print(pretraining_verdict(derf, base))
        print(verdict(derf, base))
    if kmer is not None:
        print(f"A 3-mer logistic regression on the same windows reaches {100 * kmer[0]:.1f}% test top-1: what base "
              "composition alone tells apart.")  # fmt: skip
    print("One seed per norm; the paper's GenomicBenchmarks claim is not tested at this scale.")
    print("Pretrained checkpoints (`derf-zoo export` turns one into a Hub folder):")
    for r in results:
        print(f"  {r.model:<9} {r.norm:<10} {r.pretrain_checkpoint}")
    return summary
