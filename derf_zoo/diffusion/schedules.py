"""Beta schedules and timestep respacing (after ADM / improved-diffusion, as in facebookresearch/DiT
``diffusion/gaussian_diffusion.py`` and ``diffusion/respace.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from derf_zoo._validate import check_int, unknown_name_error

__all__ = ["NOISE_SCHEDULES", "get_named_beta_schedule", "space_timesteps"]

NOISE_SCHEDULES = ("linear", "squaredcos_cap_v2")


def get_named_beta_schedule(name: str, num_steps: int) -> Tensor:
    """Betas (float64, shape (num_steps,)).

    ``"linear"``: Ho et al.'s 1e-4 .. 0.02 over 1000 steps, both ends scaled by ``1000 / num_steps`` so other step
    counts keep the same process (DiT's schedule). ``"squaredcos_cap_v2"``: Nichol & Dhariwal's cosine schedule.
    """
    check_int("diffusion_steps", num_steps, 1)
    if name == "linear":
        scale = 1000 / num_steps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=torch.float64)
    if name == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor([min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999)
                             for i in range(num_steps)], dtype=torch.float64)  # fmt: skip
    raise unknown_name_error("noise schedule", name, NOISE_SCHEDULES)


def space_timesteps(num_steps: int, section_counts: str | int | Sequence[int]) -> list[int]:
    """The original timesteps a respaced process keeps, sorted.

    Args:
        num_steps: steps of the original process.
        section_counts: ``"250"`` (250 evenly spaced steps), ``"10,15,20"`` (the process cut in three equal
            parts, strided to 10, 15 and 20 steps), a list of such counts, or ``"ddimN"`` (DDIM's fixed integer
            stride giving exactly N steps).

    Raises:
        ValueError: a section cannot hold its count, or no integer stride gives N steps for ``"ddimN"``.
    """
    if isinstance(section_counts, str):
        text = section_counts.strip()
        if text.startswith("ddim"):
            desired = int(text[len("ddim") :])
            for stride in range(1, num_steps):
                if len(range(0, num_steps, stride)) == desired:
                    return list(range(0, num_steps, stride))
            raise ValueError(f"Cannot take exactly {desired} of {num_steps} steps with an integer stride ({text!r}).")
        counts = [int(c) for c in text.split(",")]
    elif isinstance(section_counts, int):
        counts = [section_counts]
    else:
        counts = [int(c) for c in section_counts]
    size_per, extra = divmod(num_steps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count or count < 1:
            raise ValueError(f"Cannot divide a section of {size} steps into {count} (respacing {section_counts!r}).")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0
        for _ in range(count):  # accumulated as ADM does, so float rounding picks the same steps
            steps.append(start + round(position))
            position += stride
        start += size
    return sorted(set(steps))
