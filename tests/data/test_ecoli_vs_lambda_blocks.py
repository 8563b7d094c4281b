"""E. coli vs lambda with interleaved blocks, and the k-mer baseline printed beside the models (issue 18)."""

import itertools
import random

import numpy as np
import pytest

from derf_zoo.data import EcoliVsLambdaDataModule
from derf_zoo.data.genomes import _block_splits, _only_sequence, ecoli_vs_lambda
from derf_zoo.data.kmer import kmer_baseline, kmer_frequencies


def test_default_layout_is_unchanged():
    data = ecoli_vs_lambda(200, 100)
    assert {k: len(v) for k, v in data.items()} == {"train": 774, "val": 94, "test": 94}


def test_blocks_deal_disjoint_spans_in_tenths():
    spans = _block_splits(48_502, 2000, (0.6, 0.1, 0.3))
    assert [len(spans[s]) for s in ("train", "val", "test")] == [16, 2, 6]  # 24 whole blocks: 6/1/3 twice, then 4 train
    covered = sorted(span for split in spans.values() for span in split)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))  # no gap, no overlap


def test_block_windows_stay_in_their_split_and_balance_the_classes():
    window, block = 200, 2000
    data = ecoli_vs_lambda(window, 100, (0.6, 0.1, 0.3), block)
    phage = _only_sequence("lambda")
    spans = _block_splits(len(phage), block, (0.6, 0.1, 0.3))
    for split, rows in data.items():
        labels = [label for _, label in rows]
        assert labels.count(0) == labels.count(1) > 0
        for seq, label in rows:
            if label == 1:
                start = phage.find(seq)
                assert any(lo <= start and start + window <= hi for lo, hi in spans[split]), (split, start)
    assert len(data["test"]) == 228


def test_bad_block_is_refused_by_name():
    with pytest.raises(ValueError, match="block"):
        ecoli_vs_lambda(200, 100, block=150)


def test_datamodule_takes_fractions_and_block():
    dm = EcoliVsLambdaDataModule(window=200, stride=100, fractions=(0.6, 0.1, 0.3), block=2000, batch_size=8)
    dm.setup("test")
    assert len(dm.test_set) == 228


def test_kmer_frequencies_closed_form():
    freqs = kmer_frequencies(["ACGT", "AANAA"], k=2)
    # ACGT: AC, CG, GT; AANAA: AA, AA (the two k-mers with N are skipped)
    expected = np.zeros((2, 16))
    expected[0, [1, 6, 11]] = 1 / 3
    expected[1, 0] = 1.0
    np.testing.assert_allclose(freqs, expected)


def test_kmer_baseline_separates_composition_and_not_noise():
    rng = random.Random(0)

    def seq(gc: float) -> str:
        return "".join(rng.choice("GC") if rng.random() < gc else rng.choice("AT") for _ in range(100))

    train = [(seq(0.3), 0) for _ in range(50)] + [(seq(0.7), 1) for _ in range(50)]
    test = [(seq(0.3), 0) for _ in range(50)] + [(seq(0.7), 1) for _ in range(50)]
    assert kmer_baseline(train, test, k=2) > 0.95
    shuffled = [(s, rng.randint(0, 1)) for s, _ in train]
    assert 0.3 < kmer_baseline(shuffled, [(seq(0.5), rng.randint(0, 1)) for _ in range(200)], k=2) < 0.7
