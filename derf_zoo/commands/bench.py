"""``derf-zoo bench``: speed and memory of the norms and of a ViT-B training step, as ratios measured in one run.

Every configuration is timed in the same process, interleaved round by round (A B C A B C ...), and the
median is reported, so machine drift hits all of them alike. Ratios are to ``nn.LayerNorm`` (norms) or
to timm's ``vit_base_patch16_224`` (ViT step), and norms also to a plain copy of the same tensor
(memory bandwidth measured in the same run). ``benchmarks/norms.py`` and ``benchmarks/vit_step.py`` run
the full versions; ``derf-zoo bench`` a quick one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from derf_zoo.commands._help import examples

__all__ = ["interleaved_times", "kept_activation_bytes", "main_norms", "main_vit_step", "positive_int",
           "run_interleaved"]

VIT_B_SHAPE = (32, 197, 768)
GPT2_SHAPE = (8, 1024, 768)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_times(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device, inner: int = 1
) -> dict[str, list[float]]:
    """Milliseconds per call of every case in every round, measured round-robin (A B C A B C ...).

    Args:
        cases: name -> a call to time.
        repeats: rounds (>= 1): each round times every case once.
        warmup: untimed calls of each case first (>= 0).
        device: where the cases run (CUDA is synchronised around each timing).
        inner: calls per timing (>= 1); the time is divided by it.

    Raises:
        ValueError: ``repeats`` or ``inner`` < 1, or ``warmup`` < 0 (a median of no timings does not exist).
    """
    for key, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0), ("inner", inner, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"run_interleaved: {key} must be an int >= {least}, got {value!r}.")
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) * 1e3 / inner)
    return times


def run_interleaved(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device, inner: int = 1
) -> dict[str, float]:
    """Median milliseconds per call of every case, measured round-robin (see :func:`interleaved_times`)."""
    return {name: statistics.median(t) for name, t in interleaved_times(cases, repeats, warmup, device, inner).items()}


def kept_activation_bytes(fn: Callable[[], Tensor], params: set[int]) -> int:
    """Bytes autograd keeps for the backward of ``fn()``: distinct storages, parameters excluded."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _param_ptrs(*modules: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()}


# ---- norms ------------------------------------------------------------------------------------------


@dataclass
class NormRow:
    name: str
    forward_ms: float
    train_ms: float
    kept_bytes: int


def _norm_layers(device: torch.device, dtype: torch.dtype, compile_: bool) -> dict[str, nn.Module]:
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
    x = torch.randn(shape, device=device, dtype=dtype)
    grad = torch.randn_like(x)
    layers = _norm_layers(device, dtype, compile_)
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
        kept = kept_activation_bytes(lambda layer=layer, xr=xr: layer(xr), _param_ptrs(layer))
        rows.append(NormRow(name, f[name], t[name], kept))
    return rows, copy_ms


def print_norms(rows: list[NormRow], copy_ms: float, shape: tuple[int, ...], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    ln = next(r for r in rows if r.name == "nn.LayerNorm")
    act = torch.Size(shape).numel()
    table = Table(title=f"{header}: shape {tuple(shape)}; copy of the tensor = {copy_ms:.2f} ms")
    for col in ("layer", "forward ms", "vs LN", "vs copy", "fwd+bwd ms", "vs LN", "kept for backward"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in rows:
        table.add_row(r.name, f"{r.forward_ms:.2f}", f"{r.forward_ms / ln.forward_ms:.2f}x",
                      f"{r.forward_ms / copy_ms:.2f}x", f"{r.train_ms:.2f}", f"{r.train_ms / ln.train_ms:.2f}x",
                      f"{r.kept_bytes / (act * 4):.2f} act")  # fmt: skip
    Console(width=max(Console().width, 120)).print(table)


def main_norms(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {device}, dtype {dtype}, threads {torch.get_num_threads()}, torch {torch.__version__}; "
          "'act' = activation-sized tensors of float32 kept for the backward (parameters excluded)")  # fmt: skip
    for label, shape in (("ViT-B activations", VIT_B_SHAPE), ("GPT-2 activations", GPT2_SHAPE)):
        rows, copy_ms = bench_norms(shape, device, dtype, args.repeats, args.compile)
        print_norms(rows, copy_ms, shape, label)


# ---- ViT step -------------------------------------------------------------------------------------------


@dataclass
class StepRow:
    name: str
    train_ms: float
    infer_ms: float
    kept_bytes: int
    peak_cuda_bytes: int | None


def bench_vit_step(batch: int, device: torch.device, repeats: int) -> list[StepRow]:
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
            kept = kept_activation_bytes(lambda model=model: model(x), _param_ptrs(model))
        peak = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            steps[name]()
            peak = torch.cuda.max_memory_allocated(device)
        rows.append(StepRow(name, s[name], i[name], kept, peak))
    return rows


def print_vit_step(rows: list[StepRow], batch: int) -> None:
    from rich.console import Console
    from rich.table import Table

    ref = rows[0]
    table = Table(title=f"ViT-B/16 training step (AdamW) and inference, batch {batch}, 224 px")
    for col in ("model", "train step ms", "vs timm", "inference ms", "vs timm", "activations kept", "vs timm"):
        table.add_column(col, justify="left" if col == "model" else "right")
    if ref.peak_cuda_bytes is not None:
        table.add_column("peak CUDA MiB", justify="right")
    for r in rows:
        cells = [r.name, f"{r.train_ms:.0f}", f"{r.train_ms / ref.train_ms:.3f}x", f"{r.infer_ms:.0f}",
                 f"{r.infer_ms / ref.infer_ms:.3f}x", f"{r.kept_bytes / 2**20:.0f} MiB",
                 f"{r.kept_bytes / ref.kept_bytes:.3f}x"]  # fmt: skip
        if r.peak_cuda_bytes is not None:
            cells.append(f"{r.peak_cuda_bytes / 2**20:.0f}")
        table.add_row(*cells)
    Console(width=max(Console().width, 120)).print(table)


def main_vit_step(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, fp32")
    print_vit_step(bench_vit_step(args.batch, device, args.repeats), args.batch)


# ---- command ----------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts: an int >= 1, else argparse's usage error naming the option and value."""
    try:
        value = int(text)
    except ValueError:
        value = 0  # not an int ("2.5", "abc"): the same message
    if value < 1:
        # 0 repeats or batch 0 used to end in StatisticsError / ZeroDivisionError after the set-up.
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser, *, repeats: int, batch: int) -> None:
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="norm benchmark")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (the issue targets are for 2)")
    p.add_argument("--repeats", type=positive_int, default=repeats, help="timed rounds; the median is reported")
    p.add_argument("--batch", type=positive_int, default=batch, help="ViT step batch")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the eager Derf (slow to build)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="quick norm and ViT-B step benchmarks (ratios measured in one run)",
                       **examples("derf-zoo bench norms --repeats 3", "derf-zoo bench vit --device cuda"))
    p.add_argument("what", nargs="?", choices=["norms", "vit", "all"], default="all")
    add_arguments(p, repeats=5, batch=4)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from derf_zoo.commands._checks import check_device

    check_device(args.device)  # a missing GPU is one line (main prints the ValueError), not a traceback
    if args.what in ("norms", "all"):
        main_norms(args)
    if args.what in ("vit", "all"):
        main_vit_step(args)
    return 0
