"""benchmarks/hyenadna_step.py runs (a seconds-long configuration) and reports a ratio with its spread and the
Derf kernel path."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "hyenadna_step.py"


def _load():
    spec = importlib.util.spec_from_file_location("hyenadna_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_reports_interleaved_ratios_and_the_kernel():
    bench = _load()
    result = bench.run(batch=1, length=16, repeats=2, warmup=0)
    assert set(result["times"]) == {"hyenadna_tiny_1k_ln", "hyenadna_tiny_1k_derf"}
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    assert result["kernel"] in ("eager", "fused", "triton")
    args = type("Args", (), {"batch": 1, "length": 16, "repeats": 2, "warmup": 0})()
    text = bench.report(result, args)
    assert "per-round Derf/LN median" in text and "min-max" in text and repr(result["kernel"]) in text
    assert "process CPU time" in text and len(result["cpu_ratios"]) == 2
