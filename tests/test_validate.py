"""derf_zoo._validate: the argument checks every layer shares (messages name the argument, the value, the choices)."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from derf_zoo._validate import check_choice, check_int, check_positive, is_int, is_real, unknown_name_error


def test_check_int_returns_a_valid_value():
    assert check_int("n", 3, 1) == 3
    assert check_int("n", 8, 1, 8) == 8
    assert check_int("n", -5) == -5
    assert check_int("n", None, 1, allow_none=True) is None


@pytest.mark.parametrize(("value", "got"), [
    (0, "got 0."),
    (2.5, "got 2.5 (float)."),
    (True, "got True (bool)."),  # bool is an int to Python, never a count here
    ("8", "got '8' (str)."),
    (None, "got None (NoneType)."),
])  # fmt: skip
def test_check_int_names_the_argument_the_bound_and_the_value(value, got):
    with pytest.raises(ValueError) as exc:
        check_int("batch_size", value, 1, owner="DigitsDataModule", why="samples per step")
    assert str(exc.value) == f"DigitsDataModule: batch_size must be an integer >= 1 (samples per step), {got}"


def test_check_int_bounds_and_none():
    with pytest.raises(ValueError, match=r"\(int64\)\.$"):  # a numpy integer is no int (as in every check before)
        check_int("n", np.int64(4), 1)
    with pytest.raises(ValueError, match=r"^k must be an integer in \[1, 8\], got 9\.$"):
        check_int("k", 9, 1, 8)
    with pytest.raises(ValueError, match=r"^k must be an integer <= 8, got 9\.$"):
        check_int("k", 9, maximum=8)
    with pytest.raises(ValueError, match=r"^block must be an integer >= 64 or None, got 3\.$"):
        check_int("block", 3, 64, allow_none=True)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "1"])
def test_check_positive_refuses(value):
    with pytest.raises(ValueError, match=rf"^FID: scale must be a finite number > 0, got {re.escape(repr(value))}"):
        check_positive("scale", value, owner="FID")


def test_check_positive_returns_a_float():
    assert check_positive("std", 2) == 2.0 and isinstance(check_positive("std", 2), float)
    assert check_positive("std", np.float32(0.5)) == 0.5


def test_unknown_name_error_suggests_and_lists_sorted():
    err = unknown_name_error("norm", "dert", ["dyt", "derf", "layernorm"])
    assert str(err) == "Unknown norm 'dert'. Did you mean 'derf'? Valid choices: derf, dyt, layernorm."
    assert str(unknown_name_error("mode", "zzz", ["a", "b"])) == "Unknown mode 'zzz'. Valid choices: a, b."


def test_check_choice():
    assert check_choice("mode", "causal", ("causal", "masked")) == "causal"
    assert check_choice("split", "train", {"train": 1, "test": 2}) == "train"  # a mapping's keys
    with pytest.raises(ValueError, match=r"^Unknown mode 'casual'\. Did you mean 'causal'\? Valid choices: causal"):
        check_choice("mode", "casual", ("causal", "masked"))


def test_is_int_and_is_real():
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_real(3) and is_real(2.5) and is_real(np.float32(1)) and not is_real(False) and not is_real("1")


def test_the_module_is_a_leaf():
    # Every layer imports it, so it must import nothing from derf_zoo (and nothing heavy).
    code = ("import sys, derf_zoo._validate; "
            "print(sorted(m for m in sys.modules if m.startswith(('derf_zoo', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "['derf_zoo', 'derf_zoo._validate']"
