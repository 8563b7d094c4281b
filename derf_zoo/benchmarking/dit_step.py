"""A DiT training step and sampling: diffusers' ``DiTTransformer2DModel`` vs derf_zoo's LayerNorm and Derf DiTs.

All three models have the same size (DiT-B/4 on 32x32x4 latents, the paper's 256 px setting; ``"quick"``: a tiny DiT)
and are timed in one process, interleaved round by round, so machine load hits them alike. Reported per model:

- the training step: forward + epsilon-MSE backward + AdamW (the same loss for every model, so the comparison is
  the network's cost; DiT's VLB term only adds a detached second forward of the output head);
- activation memory: bytes autograd keeps for the backward (distinct storages, parameters excluded), read through
  ``torch.autograd.graph.saved_tensors_hooks`` (on CUDA also the peak of a step);
- sampling throughput: images per second of ancestral DDPM sampling (no guidance), timed over a few steps and
  extrapolated to the paper's 250 (per-step cost is constant; the extrapolation ignores only the loop's set-up).

Ratios use medians; each cell also gives min-max over the rounds, and the ratio of the per-round ratios (each round
times every model once, back to back) is reported as median [min, max]: the honest spread on a shared machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from derf_zoo.benchmarking.memory import kept_activation_bytes, param_ptrs
from derf_zoo.benchmarking.timing import PairedRatio, interleaved_times, sync

__all__ = ["DIT_SIZES", "SAMPLE_STEPS", "DiTRow", "bench_dit", "build_models", "report"]

#: (hidden, depth, heads, patch, latent side, latent channels): DiT-B/4 at 256 px and a tiny size for tests.
DIT_SIZES = {"b4": (768, 12, 12, 4, 32, 4), "quick": (64, 2, 4, 4, 8, 4)}
SAMPLE_STEPS = 250


@dataclass
class DiTRow:
    """One model's times per round (ms), activations kept for the backward, peak CUDA memory and size."""

    name: str
    train_ms: list[float]
    sample_step_ms: list[float]
    kept_bytes: int
    peak_cuda_bytes: int | None
    params: int


class _DiffusersAsOfficial(nn.Module):
    """diffusers' DiT called as ``model(x, t, y)`` (what our diffusion and samplers call)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.learn_sigma = True

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return self.model(x, timestep=t, class_labels=y).sample


def build_models(size: str) -> dict[str, nn.Module]:
    """The diffusers reference and our LayerNorm and Derf DiTs, all of one size (DiT-B/4 for ``"b4"``)."""
    from diffusers import DiTTransformer2DModel

    from derf_zoo import create_model

    hidden, depth, heads, patch, side, channels = DIT_SIZES[size]
    torch.manual_seed(0)
    reference = DiTTransformer2DModel(
        num_attention_heads=heads, attention_head_dim=hidden // heads, in_channels=channels, out_channels=2 * channels,
        num_layers=depth, sample_size=side, patch_size=patch, num_embeds_ada_norm=1000, norm_eps=1e-6,
    )  # fmt: skip
    args = {"input_size": side, "in_channels": channels, "num_classes": 1000, "learn_sigma": True}
    if size == "b4":
        ln, derf = create_model("dit_b_4_ln", **args), create_model("dit_b_4_derf", **args)
    else:
        small = {"hidden_size": hidden, "depth": depth, "num_heads": heads, "patch_size": patch, **args}
        ln, derf = create_model("dit_b_4_ln", **small), create_model("dit_b_4_derf", **small)
    return {"diffusers DiTTransformer2DModel (LN)": _DiffusersAsOfficial(reference), "derf_zoo DiT (LN)": ln,
            "derf_zoo DiT (Derf)": derf}  # fmt: skip


def bench_dit(size: str, batch: int, device: torch.device, repeats: int, sample_steps: int) -> list[DiTRow]:
    """Time every model's training step and DDPM sampling step, interleaved; measure kept activations."""
    from derf_zoo.diffusion import create_diffusion

    models = {name: m.to(device) for name, m in build_models(size).items()}
    _, _, _, _, side, channels = DIT_SIZES[size]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=generator).to(device)
    target = torch.randn(batch, 2 * channels, side, side, generator=generator).to(device)
    t = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    y = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    sampler = create_diffusion(str(sample_steps))
    steps: dict[str, Callable[[], None]] = {}
    samples: dict[str, Callable[[], None]] = {}
    for name, model in models.items():
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)

        def step(model=model, opt=opt):
            loss = nn.functional.mse_loss(model(x, t, y), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def sample(model=model):
            with torch.no_grad():
                sampler.p_sample_loop(model.eval(), x.shape, model_kwargs={"y": y}, generator=torch.Generator(
                    device).manual_seed(0), device=device)  # fmt: skip
            model.train()

        steps[name], samples[name] = step, sample
    train = interleaved_times(steps, repeats, 1, device)
    sampling = interleaved_times(samples, repeats, 1, device)
    rows = []
    for name, model in models.items():
        kept = kept_activation_bytes(lambda model=model: model(x, t, y), param_ptrs(model))
        peak = None
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            peak = torch.cuda.max_memory_allocated(device)
        rows.append(DiTRow(name, train[name], [ms / sample_steps for ms in sampling[name]], kept, peak,
                           sum(p.numel() for p in model.parameters())))  # fmt: skip
    return rows


def _ratio(a: list[float], b: list[float]) -> str:
    """Ratio of the medians, the [min, max] of the per-round ratios, and the ratio of the fastest rounds (on a
    loaded machine the fastest round is the least disturbed one)."""
    r = PairedRatio(a, b)
    return f"{r.of_medians:.3f}x [{r.min:.3f}, {r.max:.3f}]; min/min {r.of_minimums:.3f}x"


def _ms(values: list[float]) -> str:
    digits = 0 if min(values) >= 100 else 1
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(rows: list[DiTRow], size: str, batch: int, sample_steps: int) -> str:
    """A markdown report: the table of times and memory and the two target ratios."""
    hidden, depth, heads, patch, side, channels = DIT_SIZES[size]
    ref, ln, derf = rows
    lines = [
        f"DiT {'B/4' if size == 'b4' else 'quick'} (hidden {hidden}, depth {depth}, {heads} heads, patch {patch}) "
        f"on {side}x{side}x{channels} latents, batch {batch}; training step = forward + MSE backward + AdamW; "
        f"sampling = DDPM, {sample_steps} steps timed, extrapolated to {SAMPLE_STEPS}.",
        "",
        "| model | params | train step ms, median (min-max) | sampling ms/step | images/s at 250 steps "
        "| activations kept for backward |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_image = statistics.median(r.sample_step_ms) * SAMPLE_STEPS / 1e3 / batch
        peak = f" (peak CUDA {r.peak_cuda_bytes / 2**20:.0f} MiB)" if r.peak_cuda_bytes is not None else ""
        lines.append(f"| {r.name} | {r.params / 1e6:.1f} M | {_ms(r.train_ms)} | {_ms(r.sample_step_ms)} "
                     f"| {1 / per_image:.3g} | {r.kept_bytes / 2**20:.1f} MiB{peak} |")  # fmt: skip
    lines += [
        "",
        "Ratios: of medians, then [min, max] of the per-round ratios (each round times every model back to back), "
        "then of the fastest rounds.",
        "",
        "| comparison | train step | sampling step | activations kept | target |",
        "|---|---:|---:|---:|---|",
        f"| our LN DiT / diffusers DiT | {_ratio(ln.train_ms, ref.train_ms)} | "
        f"{_ratio(ln.sample_step_ms, ref.sample_step_ms)} | {ln.kept_bytes / ref.kept_bytes:.3f}x | train <= 1.05x |",
        f"| our Derf DiT / our LN DiT | {_ratio(derf.train_ms, ln.train_ms)} | "
        f"{_ratio(derf.sample_step_ms, ln.sample_step_ms)} | {derf.kept_bytes / ln.kept_bytes:.3f}x | "
        "train <= 1.05x, activations = LN |",
        "",
        "Every round, ms (train step; sampling step):",
        "",
    ]
    lines += [f"- {r.name}: {', '.join(f'{v:.0f}' for v in r.train_ms)}; "
              f"{', '.join(f'{v:.0f}' for v in r.sample_step_ms)}" for r in rows]  # fmt: skip
    return "\n".join(lines)
