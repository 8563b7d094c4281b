"""Whether torch can run on a device here: checked before minutes of work, not after them with a traceback."""

from __future__ import annotations

import torch

__all__ = ["check_device"]


def check_device(device: str | torch.device, name: str = "device") -> str | torch.device:
    """``device`` if torch can run on it on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ...
        name: how the messages name the argument (a command passes its flag, ``"--device"``).

    Raises:
        ValueError: naming the device and what this machine has.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name} {device!r} is not a device torch knows ({err}); use cpu or cuda[:N].") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {device}: no CUDA GPU is available on this machine; use cpu.")
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"{name} {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}.")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name} {device}: MPS is not available on this machine; use cpu.")
    return device
