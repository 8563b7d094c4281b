"""benchmarks/caduceus_step.py --quick runs and reports every ratio the issue targets."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "caduceus_step.py"


def _load():
    spec = importlib.util.spec_from_file_location("caduceus_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_reports_the_three_ratios(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "report.md"
    report = bench.main(["--quick", "--out", str(out)])
    assert out.read_text() == report
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    for name in ("sequential loop / chunked scan (whole step)", "chunked scan / mambapy pscan (whole step)",
                 "Derf / RMSNorm (whole step)", "chunk 8", "mambapy pscan"):  # fmt: skip
        assert name in rows, name
        numbers = [float(x) for x in rows[name].split("|")[2].split()]
        assert numbers and all(x > 0 for x in numbers)


def test_the_mambapy_scan_it_times_is_the_same_computation():
    import torch

    from derf_zoo.models.caduceus.selective_scan import selective_scan_bld

    bench = _load()
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(2, 16, 6, generator=g) for _ in range(3))
    A = -torch.rand(6, 3, generator=g) - 0.5
    B, C = (torch.randn(2, 16, 3, generator=g) for _ in range(2))
    D, bias = torch.randn(6, generator=g), torch.randn(6, generator=g)
    args = (u, delta, A, B, C, D, z, bias, True)
    torch.testing.assert_close(bench._mambapy_scan_bld(*args), selective_scan_bld(*args), rtol=1e-5, atol=1e-5)


def test_bad_counts_are_refused():
    bench = _load()
    with pytest.raises(SystemExit):
        bench.parse_args(["--repeats", "0"])
