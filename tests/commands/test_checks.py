"""Library errors name arguments, commands name flags: derf_zoo.devices.check_device and the commands' as_flags."""

import pytest
import torch

from derf_zoo.commands._checks import as_flags, check_device
from derf_zoo.devices import check_device as library_check_device


def test_the_device_check_names_the_argument_its_caller_has(monkeypatch):
    assert library_check_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"^device 'tpu9' is not a device torch knows"):
        library_check_device("tpu9")
    with pytest.raises(ValueError, match=r"^--device 'tpu9' is not a device torch knows"):
        check_device("tpu9")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device cuda: no CUDA GPU is available on this machine; use cpu\."):
        library_check_device("cuda")
    with pytest.raises(ValueError, match=r"^--device cuda:1: no CUDA GPU"):
        check_device("cuda:1")


def test_as_flags_replaces_whole_argument_names_only():
    flags = {"batch_size": "--batch-size", "decode_batch_size": "--decode-batch-size",
             "skip_invalid=True": "--skip-invalid"}  # fmt: skip
    message = "decode_batch_size must be >= 1; batch_size too; pass skip_invalid=True; my_batch_size stays"
    assert as_flags(message, flags) == ("--decode-batch-size must be >= 1; --batch-size too; pass --skip-invalid; "
                                        "my_batch_size stays")  # fmt: skip
