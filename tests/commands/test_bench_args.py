"""``derf-zoo bench`` refuses counts it cannot run with argparse's own message, before anything is timed."""

import argparse

import pytest
import torch

from derf_zoo.benchmarking.arguments import add_arguments
from derf_zoo.benchmarking.timing import run_interleaved
from derf_zoo.commands import bench

COUNT_OPTIONS = ("--repeats", "--batch", "--threads")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="derf-zoo")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("option", COUNT_OPTIONS)
@pytest.mark.parametrize("value", ["0", "-1", "-7", "2.5", "abc"])
def test_counts_must_be_positive_integers(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["bench", option, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: " in err and repr(value) in err
    assert "positive integer" in err


@pytest.mark.parametrize("option", COUNT_OPTIONS)
def test_the_benchmark_scripts_get_the_same_checks(option, capsys):
    # benchmarks/norms.py and benchmarks/vit_step.py build their parser with add_arguments.
    parser = argparse.ArgumentParser()
    add_arguments(parser, repeats=25, batch=8)
    with pytest.raises(SystemExit):
        parser.parse_args([option, "0"])
    assert f"argument {option}: " in capsys.readouterr().err


def test_valid_counts_and_defaults_parse_as_ints():
    args = _parser().parse_args(["bench", "norms", "--repeats", "3", "--batch", "2", "--threads", "1"])
    assert (args.repeats, args.batch, args.threads) == (3, 2, 1)
    defaults = _parser().parse_args(["bench"])
    assert (defaults.repeats, defaults.batch, defaults.threads) == (5, 4, 2)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"repeats": -1}, {"inner": 0}, {"warmup": -1}])
def test_run_interleaved_refuses_counts_it_cannot_time(kwargs):
    # Called from Python, not through argparse: 0 repeats used to end in statistics.StatisticsError.
    args = {"repeats": 2, "warmup": 0, "inner": 1, **kwargs}
    with pytest.raises(ValueError, match=rf"{next(iter(kwargs))} must be"):
        run_interleaved({"noop": lambda: None}, device=torch.device("cpu"), **args)


def test_run_interleaved_medians():
    times = run_interleaved({"a": lambda: None, "b": lambda: None}, 3, 1, torch.device("cpu"))
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
