"""A ViT-B/16 training step (AdamW) and inference: timm's LayerNorm ViT against derf_zoo's LayerNorm and Derf ViTs,
time and activation memory (peak CUDA memory on a GPU), measured side by side in one run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from derf_zoo.benchmarking.memory import kept_activation_bytes, param_ptrs
from derf_zoo.benchmarking.timing import run_interleaved

__all__ = ["StepRow", "bench_vit_step"]


@dataclass
class StepRow:
    """One model's median times (ms), activations kept for the backward, and peak CUDA memory of a step."""

    name: str
    train_ms: float
    infer_ms: float
    kept_bytes: int
    peak_cuda_bytes: int | None


def bench_vit_step(batch: int, device: torch.device, repeats: int) -> list[StepRow]:
    """Time each model's training step and inference on one fixed batch of 224 px images, interleaved."""
    import timm

    import derf_zoo
    from derf_zoo.norms import use_kernel

    torch.manual_seed(0)
    models: dict[str, tuple[nn.Module, str]] = {
        "timm vit_base_patch16_224 (LN)": (timm.create_model("vit_base_patch16_224", global_pool="avg"), "auto"),
        "derf_zoo vit_base_ln": (derf_zoo.vit_base_ln(), "auto"),
        "derf_zoo vit_base_derf (fused)": (derf_zoo.vit_base_derf(), "auto"),
        "derf_zoo vit_base_derf (official-style eager)": (derf_zoo.vit_base_derf(), "eager"),
    }
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    steps, infers = {}, {}
    for name, (model, kernel) in models.items():
        model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt, kernel=kernel):
            with use_kernel(kernel):
                loss = nn.functional.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        def infer(model=model, kernel=kernel):
            with use_kernel(kernel), torch.no_grad():
                model(x)

        steps[name], infers[name] = step, infer
    s = run_interleaved(steps, repeats, 1, device)
    i = run_interleaved(infers, repeats, 1, device)
    rows = []
    for name, (model, kernel) in models.items():
        with use_kernel(kernel):
            kept = kept_activation_bytes(lambda model=model: model(x), param_ptrs(model))
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            peak = torch.cuda.max_memory_allocated(device)
        rows.append(StepRow(name, s[name], i[name], kept, peak))
    return rows
