"""benchmarks/wav2vec2_step.py --quick: the three models run interleaved and the ratios are printed."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("wav2vec2_step", ROOT / "benchmarks" / "wav2vec2_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_prints_ratios(tmp_path):
    bench = _load()
    text = bench.main(["--quick", "--threads", "1", "--out", str(tmp_path / "r.md")])
    assert "ours LN / HF Wav2Vec2ForPreTraining" in text and "ours Derf / ours LN" in text
    assert (tmp_path / "r.md").read_text() == text
    for name in ("hf_ln", "ours_ln", "ours_derf"):
        assert f"| {name} |" in text
    with pytest.raises(SystemExit):
        bench.main(["--seconds", "0.01"])
