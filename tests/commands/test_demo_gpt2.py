"""The demo's GPT-2 part: the unigram reference, and a shrunken run that prints a verdict, samples and curves."""

import math

import pytest
import torch

from derf_zoo.commands.demo import PARTS, gpt2


def test_unigram_entropy_is_below_uniform():
    assert 2.5 < gpt2.unigram_entropy() < math.log(65)


@pytest.mark.slow
def test_the_part_runs_and_returns_a_verdict(tmp_path, monkeypatch, capsys):
    assert PARTS["gpt2"] is gpt2
    monkeypatch.setattr(gpt2, "TRAINER_ARGS", ["--data.init_args.samples_per_epoch=64",
                                               "--data.init_args.max_eval_windows=4",
                                               "--model.init_args.model_args.n_layer=1"])
    monkeypatch.setitem(gpt2.SAMPLE, "chars", 20)
    monkeypatch.setattr(gpt2, "held_out_windows", _some_windows)
    result = gpt2.run_part(tmp_path, epochs=1, progress=False)
    out = capsys.readouterr().out
    assert result.family == "GPT-2" and result.metric == "val nats / char" and result.pictures[0].is_file()
    assert "Derf sample" in out and "LayerNorm sample" in out and "nats per character" in out
    assert math.isfinite(result.derf) and math.isfinite(result.baseline_value) and result.noise > 0  # 2 steps: no bound


def _some_windows(seq_len=64):
    """64 evenly spaced held-out windows instead of all 1,716 (keeps the test short)."""
    from derf_zoo.data.text import TextDataModule

    data = TextDataModule(embedded="shakespeare", seq_len=seq_len, max_eval_windows=64, samples_per_epoch=1)
    data.setup()
    return torch.stack([data.val_set[i] for i in range(len(data.val_set))])

