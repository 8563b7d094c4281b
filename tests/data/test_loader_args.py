"""Every DataModule checks its loader arguments when it is built (one shared check in derf_zoo.data.base)."""

import re

import pytest

from derf_zoo.data import DigitsDataModule, ImageDataModule


@pytest.mark.parametrize("value", [-3, 0, 2.5, "8", True, None])
def test_batch_size_must_be_a_positive_int(value):
    # The type is named where it is the problem: "got 2.5 (float).", "got True (bool).", but "got 0.".
    got = re.escape(repr(value)) + ("" if type(value) is int else rf" \({type(value).__name__}\)")
    with pytest.raises(ValueError, match=rf"DigitsDataModule: batch_size must be an integer >= 1 .*got {got}\.$"):
        DigitsDataModule(batch_size=value)
    with pytest.raises(ValueError, match=r"ImageDataModule: batch_size must be an integer >= 1"):
        ImageDataModule(root="unused", batch_size=value)


def test_num_workers_must_be_a_non_negative_int():
    with pytest.raises(ValueError, match=r"DigitsDataModule: num_workers must be an integer >= 0 .*got -1\."):
        DigitsDataModule(num_workers=-1)
    assert DigitsDataModule(batch_size=1, num_workers=0).hparams.batch_size == 1
