"""derf_zoo.release.compare: the one paired noise, the binomial noise and the one verdict wording."""

import math

import pytest
import torch

from derf_zoo.release import binomial_noise, paired_noise, verdict, verdict_sentence


def test_paired_noise_is_two_standard_errors_of_the_difference():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.5, 2.0, 2.5, 4.0])
    d = a - b  # -0.5, 0, 0.5, 0: sample std sqrt(1/6)
    assert paired_noise(a, b) == pytest.approx(2 * math.sqrt(1 / 6) / 2)
    assert paired_noise(a, b) == pytest.approx(2 * float(d.std()) / 2)
    assert paired_noise(a[:1], b[:1]) == math.inf  # one item: no estimate


def test_paired_noise_over_blocks_averages_each_block_first():
    a = torch.tensor([1.0, 1.2, 2.0, 2.2, 3.0, 3.6, 9.0], dtype=torch.float64)  # the 7th item: a partial block
    b = torch.zeros(7, dtype=torch.float64)
    blocks = torch.tensor([1.1, 2.1, 3.3], dtype=torch.float64)  # block means of a - b with blocks of 2
    assert paired_noise(a, b, block=2) == pytest.approx(2 * float(blocks.std()) / math.sqrt(3))
    assert paired_noise(a[:3], b[:3], block=2) == math.inf  # one whole block
    assert paired_noise(a, b, block=2) != pytest.approx(paired_noise(a, b))  # blocking changes the estimate


def test_binomial_noise():
    assert binomial_noise((0.9, 100), (0.8, 400)) == pytest.approx(2 * math.sqrt(0.09 / 100 + 0.16 / 400))
    assert binomial_noise((1.0, 10)) == 0.0


def test_verdict_cell_follows_the_direction_and_the_noise():
    assert verdict(99.0, 98.0, 0.5, higher_is_better=True) == "Derf better, beyond the noise"
    assert verdict(99.0, 98.0, 1.5, higher_is_better=True) == "Derf ahead, within the noise: not separated"
    lower = verdict(0.50, 0.40, 0.05, higher_is_better=False, baseline_name="RMSNorm")
    assert lower == "RMSNorm better, beyond the noise"
    assert verdict(1.0, 1.0, 0.1, higher_is_better=False) == "tie"


def test_verdict_sentence_names_the_winner_the_gap_and_the_noise():
    beyond = verdict_sentence(("Derf", 0.9), ("LayerNorm", 0.6), 0.05, where="100 test windows", metric="test top-1",
                              prefix="HyenaDNA: ")  # fmt: skip
    assert beyond == ("HyenaDNA: Derf wins at this scale (90.0% vs LayerNorm 60.0% test top-1), a gap of 30.0 points; "
                      "that exceeds twice the evaluation noise (5.0 points on 100 test windows).")
    within = verdict_sentence(("Derf", 0.985), ("LayerNorm", 0.99), 0.02, where="359 images", metric="val top-1",
                              metric_in_gap=False)  # fmt: skip
    assert within == ("LayerNorm wins at this scale (99.0% vs Derf 98.5%), a gap of 0.5 points; that is within the "
                      "evaluation noise (2 standard errors = 2.0 points on 359 images), so this run does not separate "
                      "them.")
    tie = verdict_sentence(("Derf", 0.7), ("RMSNorm", 0.7), 0.1, where="50 test windows", metric="test top-1")
    assert tie == "Derf and RMSNorm tie at 70.0% test top-1 (noise ±10.0 points on 50 test windows)."
