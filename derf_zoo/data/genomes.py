"""Real genomes embedded in the package, and a real labelled task built from them: E. coli vs phage lambda.

``derf_zoo/data/assets/dna/`` holds phage lambda (NC_001416.1, 48,502 bp, whole) and the first 1 Mbp of
*Escherichia coli* 536 (NC_008253.1; the genome has 4,938,920 bp), from Debian's ``bowtie2-examples`` and
``bowtie-examples``; ``scripts/make_dna_assets.py`` rewrites them and the folder's README gives sources and licence.

**E. coli vs lambda** (like GenomicBenchmarks' ``demo_human_or_worm``): is a ``window``-base fragment from the
bacterium or from its phage? Each genome is cut by position into train / val / test regions (80 / 10 / 10 % by
default); lambda windows tile each region with ``stride``; as many E. coli windows, evenly spaced over the matching
E. coli region, balance the classes. No window crosses a region boundary, so no base of a held-out window is ever
trained on, and everything is deterministic (no seed). Lambda's GC content (49.9 %) is close to that of the stored
E. coli part (51.0 %), so composition alone does not solve it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from derf_zoo._validate import check_choice, check_int
from derf_zoo.data.fasta import InMemoryGenome, read_fasta
from derf_zoo.data.genomic_benchmarks import Labelled, LabelledSequenceDataModule, write_sequences

__all__ = ["ECOLI_VS_LAMBDA_CLASSES", "EMBEDDED_GENOMES", "EcoliVsLambdaDataModule", "ecoli_vs_lambda",
           "embedded_genome", "embedded_genome_path", "write_ecoli_vs_lambda"]  # fmt: skip

#: embedded genome name -> file in ``derf_zoo/data/assets/dna``.
EMBEDDED_GENOMES = {"ecoli": "ecoli_536_1mbp.fa.gz", "lambda": "lambda_phage.fa.gz"}
ECOLI_VS_LAMBDA_CLASSES = ["ecoli", "lambda"]  # sorted, as GenomicBenchmarks labels class folders


def embedded_genome_path(name: str) -> Path:
    """Path of an embedded genome's gzipped FASTA (``"ecoli"`` or ``"lambda"``)."""
    check_choice("embedded genome", name, EMBEDDED_GENOMES)
    return Path(str(resources.files("derf_zoo.data").joinpath(f"assets/dna/{EMBEDDED_GENOMES[name]}")))


@cache
def embedded_genome(name: str) -> InMemoryGenome:
    """An embedded genome in memory (one record each; cached: E. coli's 1 Mbp takes ~0.1 s to read)."""
    path = embedded_genome_path(name)
    return InMemoryGenome(read_fasta(path), source=f"embedded genome {name!r} ({path.name})")


def _only_sequence(name: str) -> str:
    genome = embedded_genome(name)
    return genome.records[genome.names[0]]


def _regions(n: int, fractions: tuple[float, float, float]) -> dict[str, tuple[int, int]]:
    a = round(n * fractions[0])
    b = a + round(n * fractions[1])
    return {"train": (0, a), "val": (a, b), "test": (b, n)}


def _block_splits(n: int, block: int, fractions: tuple[float, float, float]) -> dict[str, list[tuple[int, int]]]:
    """Consecutive ``block``-base blocks dealt to train / val / test in a repeating cycle of 10 (``fractions`` x 10
    blocks each, at least one for val and test): every split samples the whole genome, none shares a base."""
    n_val, n_test = max(1, round(10 * fractions[1])), max(1, round(10 * fractions[2]))
    cycle = ["train"] * (10 - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    out: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for b in range(n // block):
        out[cycle[b % 10]].append((b * block, (b + 1) * block))
    return out


def _starts(spans: list[tuple[int, int]], window: int, stride: int) -> list[int]:
    return [s for lo, hi in spans for s in range(lo, hi - window + 1, stride)]


def _spread(spans: list[tuple[int, int]], window: int, count: int) -> list[int]:
    """``count`` window starts spread evenly over the spans (no window crosses a span's end)."""
    room = [hi - lo - window + 1 for lo, hi in spans]
    offsets = np.linspace(0, sum(room) - 1, count).round().astype(int)
    ends = np.cumsum(room)
    starts = []
    for o in offsets:
        i = int(np.searchsorted(ends, o, side="right"))
        starts.append(spans[i][0] + int(o - (ends[i] - room[i])))
    return starts


def ecoli_vs_lambda(window: int = 200, stride: int | None = None,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                    block: int | None = None) -> dict[str, Labelled]:  # fmt: skip
    """The E. coli vs lambda task: ``{"train"|"val"|"test": [(sequence, label), ...]}``, label 0 E. coli, 1 lambda.

    Args:
        window: bases per sample.
        stride: step between lambda windows (default ``window``: non-overlapping; a smaller stride gives more,
            overlapping training windows, still confined to their region).
        fractions: shares of each genome for train, val, test (by position, in that order).
        block: None cuts each genome into three contiguous regions (train, val, test). A block size cuts it into
            ``block``-base blocks dealt to the splits in a repeating cycle of 10 (``fractions`` in tenths), so every
            split samples the whole genome: lambda's regions differ in composition (its early and late genes), and
            a contiguous test region measures that shift more than the task (issue 18).
    """
    stride = window if stride is None else stride
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got {window}, {stride}.")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three shares > 0 summing to 1 (train, val, test), got {fractions}.")
    check_int("block", block, window, why="window", allow_none=True)
    phage, host = _only_sequence("lambda"), _only_sequence("ecoli")
    if block is None:
        phage_spans = {k: [v] for k, v in _regions(len(phage), fractions).items()}
        host_spans = {k: [v] for k, v in _regions(len(host), fractions).items()}
    else:
        phage_spans = _block_splits(len(phage), block, fractions)
        host_spans = _block_splits(len(host), block, fractions)
    out: dict[str, Labelled] = {}
    for split in ("train", "val", "test"):
        starts = _starts(phage_spans[split], window, stride)
        if not starts:
            raise ValueError(f"window={window} is longer than lambda's {split} region(s) {phage_spans[split]}.")
        host_starts = _spread(host_spans[split], window, len(starts))
        out[split] = [(host[s : s + window], 0) for s in host_starts] + [(phage[s : s + window], 1) for s in starts]
    return out


def write_ecoli_vs_lambda(root: str | Path, task: str = "ecoli_vs_lambda", window: int = 200,
                          overwrite: bool = False) -> Path:  # fmt: skip
    """Materialise E. coli vs lambda in the GenomicBenchmarks layout (``<root>/<task>/{train,test}/<class>``):
    train = the train and val regions, test = the test region, non-overlapping windows (so the GenomicBenchmarks
    protocol's random 90/10 split of train cannot put overlapping windows on both sides)."""
    data = ecoli_vs_lambda(window)
    return write_sequences(root, task, {"train": data["train"] + data["val"], "test": data["test"]},
                           ECOLI_VS_LAMBDA_CLASSES, overwrite=overwrite)  # fmt: skip


class EcoliVsLambdaDataModule(LabelledSequenceDataModule):
    """E. coli vs lambda windows with the fixed position split of :func:`ecoli_vs_lambda` (test = its own region).

    Args:
        window: bases per sample (also ``max_length`` unless given; ``add_eos`` adds one token).
        stride: step between lambda windows (default ``window // 2``: twice the samples, overlapping only within a
            split).
        fractions / block: how the genomes are split (see :func:`ecoli_vs_lambda`; default: contiguous 80/10/10 %
            regions).
        max_length / padding_side / add_eos / rc_aug / batch_size / num_workers: see
            :class:`~derf_zoo.data.genomic_benchmarks.LabelledSequenceDataModule`.
    """

    def __init__(self, window: int = 200, stride: int | None = None, max_length: int | None = None,
                 padding_side: str = "left", add_eos: bool = False, rc_aug: bool = False, batch_size: int = 64,
                 num_workers: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 block: int | None = None) -> None:  # fmt: skip
        max_length = max_length if max_length is not None else window + bool(add_eos)
        super().__init__(max_length, padding_side, add_eos, rc_aug, batch_size, num_workers)
        self.save_hyperparameters()
        # Under LightningCLI, save_hyperparameters records the parsed config (max_length None), not the resolved value.
        self.hparams["max_length"] = max_length

    def load_splits(self) -> tuple[dict[str, Labelled], list[str]]:
        stride = self.hparams.stride if self.hparams.stride is not None else max(1, self.hparams.window // 2)
        fractions = tuple(self.hparams.fractions)
        data = ecoli_vs_lambda(self.hparams.window, stride, fractions, self.hparams.block)
        return data, list(ECOLI_VS_LAMBDA_CLASSES)
