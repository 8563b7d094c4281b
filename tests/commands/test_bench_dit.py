"""benchmarks/dit_step.py's engine (derf_zoo.benchmarking.dit_step) on a tiny DiT: every model runs, the report
holds the target ratios, and the deterministic part (activations kept for the backward) meets its target: Derf
keeps what LayerNorm keeps."""

import argparse
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

from derf_zoo.benchmarking import dit_step as bench_dit

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "dit_step.py"


def test_models_have_the_same_size_and_agree_on_shapes():
    models = bench_dit.build_models("quick")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    ref, ln, derf = counts.values()
    # diffusers keeps a timestep/label embedder per block where the official layout shares one, and Derf adds
    # two scalars per site: the sizes agree to within those
    assert abs(ln - ref) / ref < 0.35 and 0 < derf - ln < 100
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 999]), torch.tensor([0, 7])
    for model in models.values():
        assert model(x, t, y).shape == (2, 8, 8, 8)


@pytest.mark.slow
def test_quick_report_has_every_row_and_ratio(capsys):
    rows = bench_dit.bench_dit("quick", 2, torch.device("cpu"), repeats=2, sample_steps=2)
    assert [r.name for r in rows] == list(bench_dit.build_models("quick"))
    assert all(len(r.train_ms) == 2 and len(r.sample_step_ms) == 2 and min(r.train_ms) > 0 for r in rows)
    ref, ln, derf = rows
    assert ref.kept_bytes > 0 and derf.kept_bytes <= 1.05 * ln.kept_bytes  # the memory target: no timing noise
    text = bench_dit.report(rows, "quick", 2, 2)
    assert "| our LN DiT / diffusers DiT |" in text and "| our Derf DiT / our LN DiT |" in text
    ratio = r"\d+\.\d{3}x \[\d+\.\d{3}, \d+\.\d{3}\]; min/min \d+\.\d{3}x"  # a noisy ratio can reach 10x
    assert len(re.findall(ratio, text)) == 4  # train and sampling, for both comparisons


def test_script_quick_writes_its_report(tmp_path, monkeypatch):
    out = tmp_path / "dit.md"
    argv = ["dit_step.py", "--quick", "--repeats", "1", "--sample-steps", "1", "--threads", "1", "--device", "cpu",
            "--batch", "2", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    text = out.read_text()
    assert text.startswith("# DiT step benchmark") and "batch 2" in text and "diffusers DiTTransformer2DModel" in text


@pytest.mark.parametrize("value", ["0", "x"])
def test_sample_steps_must_be_positive(value, capsys):
    parser = argparse.ArgumentParser()
    runpy.run_path(str(SCRIPT))["add_dit_arguments"](parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--sample-steps", value])
    assert "positive integer" in capsys.readouterr().err
