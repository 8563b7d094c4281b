"""The norm layers side by side: forward, forward + backward and the activations kept for the backward, measured
in one run with a plain copy of the same tensor (the memory bandwidth of this run) as the floor.

``derf-zoo bench norms`` prints a quick version; ``benchmarks/norms.py`` the full one with its targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from derf_zoo.benchmarking.memory import kept_activation_bytes, param_ptrs
from derf_zoo.benchmarking.timing import run_interleaved

__all__ = ["GPT2_SHAPE", "VIT_B_SHAPE", "NormRow", "bench_norms", "norm_layers"]

VIT_B_SHAPE = (32, 197, 768)
GPT2_SHAPE = (8, 1024, 768)


@dataclass
class NormRow:
    """One layer's median times (ms) and the bytes it keeps for the backward."""

    name: str
    forward_ms: float
    train_ms: float
    kept_bytes: int


def norm_layers(device: torch.device, dtype: torch.dtype, compile_: bool) -> dict[str, nn.Module]:
    """LayerNorm, RMSNorm, DyT and Derf in each kernel this device runs (Triton where it can), width 768."""
    from derf_zoo.norms import Derf, DyT, RMSNorm
    from derf_zoo.norms.kernels.triton_kernels import supports as triton_supports

    layers: dict[str, nn.Module] = {
        "nn.LayerNorm": nn.LayerNorm(768),
        "RMSNorm": RMSNorm(768),
        "DyT (eager)": DyT(768, kernel="eager"),
        "DyT (fused)": DyT(768, kernel="fused"),
        "Derf (official-style eager)": Derf(768, kernel="eager"),
        "Derf (fused)": Derf(768, kernel="fused"),
    }
    probe = torch.empty(1, 768, device=device, dtype=dtype)
    if triton_supports(probe, "derf"):
        layers["DyT (triton)"] = DyT(768, kernel="triton")
        layers["Derf (triton)"] = Derf(768, kernel="triton")
    if compile_:
        layers["Derf (torch.compile of eager)"] = torch.compile(Derf(768, kernel="eager"))
    return {k: v.to(device=device, dtype=dtype) for k, v in layers.items()}


def bench_norms(
    shape: tuple[int, ...], device: torch.device, dtype: torch.dtype, repeats: int, compile_: bool
) -> tuple[list[NormRow], float]:
    """Every layer of :func:`norm_layers` on a tensor of ``shape``; returns its rows and the copy's median ms."""
    x = torch.randn(shape, device=device, dtype=dtype)
    grad = torch.randn_like(x)
    layers = norm_layers(device, dtype, compile_)
    forward = {}
    train = {}
    for name, layer in layers.items():
        xr = x.clone().requires_grad_(True)

        def fwd(layer=layer):
            with torch.no_grad():
                return layer(x)

        def fwd_bwd(layer=layer, xr=xr):
            xr.grad = None
            layer(xr).backward(grad)

        forward[name], train[name] = fwd, fwd_bwd
    # inner=5: each case runs a few times in a row so the allocator is in its steady state for that case (the
    # first 19 MB allocation after another case's frees can cost page faults that belong to neither).
    copy_ms = run_interleaved({"copy": lambda: x.clone()}, repeats, 3, device, inner=5)["copy"]
    f = run_interleaved(forward, repeats, 3, device, inner=5)
    t = run_interleaved(train, repeats, 2, device, inner=5)
    rows = []
    for name, layer in layers.items():
        xr = x.clone().requires_grad_(True)
        kept = kept_activation_bytes(lambda layer=layer, xr=xr: layer(xr), param_ptrs(layer))
        rows.append(NormRow(name, f[name], t[name], kept))
    return rows, copy_ms
