"""The benchmarks' one timing harness (derf_zoo.benchmarking.timing): call order, warm-up, units and the paired
ratios, checked against a call log and against ratios computed by hand."""

import statistics

import pytest

from derf_zoo.benchmarking.timing import PairedRatio, Timings, quantile, time_rounds


def _logged(names: str) -> tuple[dict, list[str]]:
    calls: list[str] = []
    return {n: (lambda n=n: calls.append(n)) for n in names}, calls


@pytest.mark.parametrize(("order", "rounds"), [
    ("fixed", ["ABC", "ABC", "ABC", "ABC"]),
    ("alternate", ["ABC", "CBA", "ABC", "CBA"]),  # wav2vec 2.0 and HyenaDNA steps
    ("rotate", ["ABC", "BCA", "CAB", "ABC"]),  # GPT-2 step and generation
])  # fmt: skip
def test_each_order_calls_every_case_once_per_round_after_the_warmup(order, rounds):
    cases, calls = _logged("ABC")
    timings = time_rounds(cases, repeats=4, warmup=2, order=order)
    assert "".join(calls) == "AABBCC" + "".join(rounds)  # the warm-up is case after case, then the rounds
    assert all(len(t) == 4 for t in (*timings.wall.values(), *timings.cpu.values()))
    assert list(timings.wall) == ["A", "B", "C"]  # results keep the cases' order, whatever the round order


def test_inner_calls_are_divided_out_and_progress_goes_to_stderr(capsys):
    cases, calls = _logged("AB")
    timings = time_rounds(cases, repeats=2, warmup=0, inner=3, progress=True)
    assert "".join(calls) == "AAABBB" * 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("round 1/2: A ") and ", B " in err[0] and err[0].endswith(" ms")
    assert all(t >= 0 for t in timings.wall["A"] + timings.cpu["B"])


def test_a_slow_case_is_measured_in_milliseconds():
    import time

    timings = time_rounds({"sleep": lambda: time.sleep(0.02), "noop": lambda: None}, repeats=2, warmup=0)
    assert all(15 <= ms < 1000 for ms in timings.wall["sleep"])  # a 20 ms sleep, in ms
    assert timings.ratio("sleep", "noop").min > 10
    assert max(timings.cpu["sleep"]) < min(timings.wall["sleep"])  # sleeping costs wall time, not CPU time


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"repeats": 0}, r"time_rounds: repeats must be an integer >= 1, got 0\."),
    ({"warmup": -1}, r"time_rounds: warmup must be an integer >= 0, got -1\."),
    ({"inner": 0}, r"time_rounds: inner must be an integer >= 1, got 0\."),
    ({"repeats": True}, r"repeats must be an integer >= 1, got True \(bool\)"),
    ({"order": "random"}, r"Unknown order 'random'\..*Valid choices: alternate, fixed, rotate"),
])  # fmt: skip
def test_counts_and_orders_it_cannot_run_are_refused(kwargs, message):
    args = {"repeats": 1, "warmup": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        time_rounds({"a": lambda: None}, **args)
    with pytest.raises(ValueError, match="no case"):
        time_rounds({}, 1, 0)


def test_paired_ratio_summaries_match_a_hand_computation():
    a, b = [2.0, 3.0, 12.0, 5.0], [1.0, 2.0, 4.0, 4.0]
    r = PairedRatio(a, b)
    per_round = [2.0, 1.5, 3.0, 1.25]
    assert r.per_round == per_round
    assert r.median == statistics.median(per_round) == 1.75
    assert (r.min, r.max) == (1.25, 3.0)
    assert r.of_medians == statistics.median(a) / statistics.median(b) == 4.0 / 3.0
    assert r.of_minimums == 2.0
    # the middle half, numpy's linear interpolation: sorted [1.25, 1.5, 2, 3] at positions 0.75 and 2.25
    assert r.quantile(0.25) == pytest.approx(1.4375) and r.quantile(0.75) == pytest.approx(2.25)
    assert r.describe("Derf/LN") == ("per-round Derf/LN median 1.750x, middle half 1.438-2.250x, min-max "
                                     "1.250-3.000x; ratio of medians 1.333x; ratio of minimums 2.000x")  # fmt: skip
    assert r.describe().startswith("per-round median 1.750x")
    with pytest.raises(ValueError, match="same rounds"):
        PairedRatio([1.0], [1.0, 2.0])


def test_timings_ratio_reads_either_clock():
    t = Timings(wall={"x": [2.0, 4.0], "y": [1.0, 2.0]}, cpu={"x": [3.0, 3.0], "y": [1.0, 1.0]})
    assert t.ratio("x", "y").per_round == [2.0, 2.0] and t.ratio("x", "y", clock="cpu").per_round == [3.0, 3.0]
    assert t.medians() == {"x": 3.0, "y": 1.5}


def test_quantile_interpolates():
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.25) == 1.75  # unsorted input
    assert quantile([5.0], 0.25) == 5.0
