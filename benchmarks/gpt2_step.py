"""GPT-2 against Hugging Face's ``GPT2LMHeadModel``: the training step (ours LN / HF, Derf / LN) and generation
speed with the key/value cache (ours vs HF ``generate``), measured side by side in one run.

Training: HF's model, ours holding the same weights (``from_transformers``) and ours with Derf in every site (same
init seed) each take AdamW steps on one fixed batch, timed round by round in an order that rotates every round;
each round gives one ratio per pair, reported as the median and the spread (middle half, min-max), for wall time
and process CPU time (less sensitive to other processes on a shared machine).

Generation: greedy decoding (``top_k=1`` for ours, ``do_sample=False`` for HF) of ``--new-tokens`` after a prompt,
tokens per second of ours with the cache, ours without it, and HF ``generate`` (its cache on); the greedy tokens of
ours and HF must be identical (they hold the same weights), which the script checks.

    python benchmarks/gpt2_step.py [--size 124m] [--batch 2] [--length 128] [--repeats 10] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from derf_zoo.commands.bench import positive_int
from derf_zoo.models.gpt2 import GPT2, GPT2_SIZES, from_transformers
from derf_zoo.norms.kernels import resolve_kernel

TARGET = 1.05  # issue 20: ours within 1.05x of HF for the training step


def make_step(model: nn.Module, ids: torch.Tensor, hf: bool) -> Callable[[], float]:
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.1, betas=(0.9, 0.95))

    def step() -> float:
        logits = model(ids[:, :-1]).logits if hf else model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return step


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def build(size: str, length: int) -> dict[str, nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = GPT2_SIZES[size]
    n_positions = max(length + 1, shape.get("n_positions", 1024))
    torch.manual_seed(0)
    config = GPT2Config(n_embd=shape["n_embd"], n_layer=shape["n_layer"], n_head=shape["n_head"],
                        vocab_size=shape.get("vocab_size", 50257), n_positions=n_positions, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    hf = GPT2LMHeadModel(config)
    ours_ln = from_transformers(hf)
    torch.manual_seed(0)
    ours_derf = GPT2(**{k: v for k, v in ours_ln.model_args.items() if k != "norm"}, norm="derf")
    return {"HF GPT2LMHeadModel": hf, "ours LN": ours_ln, "ours Derf": ours_derf}


def time_training(models: dict[str, nn.Module], batch: int, length: int, repeats: int, warmup: int
                  ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:  # fmt: skip
    vocab = next(iter(models.values())).config.vocab_size
    ids = torch.randint(0, vocab, (batch, length + 1), generator=torch.Generator().manual_seed(0))
    steps = {name: make_step(m.train(), ids, hf=name.startswith("HF")) for name, m in models.items()}
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    for r in range(repeats):
        for name in order[r % len(order):] + order[:r % len(order)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            wall[name].append((time.perf_counter() - start) * 1e3)
            cpu[name].append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


@torch.no_grad()
def time_generation(models: dict[str, nn.Module], prompt_len: int, new_tokens: int, repeats: int
                    ) -> dict[str, list[float]]:  # fmt: skip
    hf, ours = models["HF GPT2LMHeadModel"].eval(), models["ours LN"].eval()
    prompt = torch.randint(0, hf.config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    runs = {
        "ours, KV cache": lambda: ours.generate(prompt, new_tokens, top_k=1),
        "ours, no cache": lambda: ours.generate(prompt, new_tokens, top_k=1, use_cache=False),
        "HF generate (cache)": lambda: hf.generate(prompt, attention_mask=mask, max_new_tokens=new_tokens,
                                                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=0),
    }
    tokens = {name: fn() for name, fn in runs.items()}  # warm-up, and the parity check below
    if not (torch.equal(tokens["ours, KV cache"], tokens["HF generate (cache)"])
            and torch.equal(tokens["ours, KV cache"], tokens["ours, no cache"])):
        raise AssertionError("greedy tokens differ between ours (cached / uncached) and HF generate")
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        names = list(runs)
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            rates[name].append(new_tokens / (time.perf_counter() - start))
    return rates


def _ratio(label: str, a: list[float], b: list[float]) -> str:
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return (f"{label}: per-round median {statistics.median(ratios):.3f}x, middle half {quantile(ratios, 0.25):.3f}-"
            f"{quantile(ratios, 0.75):.3f}x, min-max {min(ratios):.3f}-{max(ratios):.3f}x; ratio of medians "
            f"{statistics.median(a) / statistics.median(b):.3f}x; ratio of minimums {min(a) / min(b):.3f}x")


def report(args: argparse.Namespace) -> str:
    models = build(args.size, args.length)
    wall, cpu = time_training(models, args.batch, args.length, args.repeats, args.warmup)
    rates = time_generation(models, args.prompt, args.new_tokens, args.gen_repeats)
    kernel = resolve_kernel(None, torch.zeros(1, 8), "derf")
    lines = [
        f"GPT-2 {args.size} training step (AdamW, clip 1.0), batch {args.batch} x {args.length} tokens, fp32, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}, {args.repeats} rounds (order rotating), "
        f"{args.warmup} warm-up steps each; Derf kernel path {kernel!r}",
        "",
        "| model | wall median ms | wall min ms | wall max ms | CPU-time median ms |",
        "|---|---|---|---|---|",
    ]
    for name, t in wall.items():
        lines.append(f"| {name} | {statistics.median(t):.1f} | {min(t):.1f} | {max(t):.1f} | "
                     f"{statistics.median(cpu[name]):.1f} |")  # fmt: skip
    hf, ln, derf = (wall[k] for k in models)
    hf_c, ln_c, derf_c = (cpu[k] for k in models)
    lines += ["", _ratio("wall, ours LN / HF", ln, hf), _ratio("CPU, ours LN / HF", ln_c, hf_c),
              _ratio("wall, ours Derf / ours LN", derf, ln), _ratio("CPU, ours Derf / ours LN", derf_c, ln_c),
              f"target: ours <= {TARGET}x HF", "",
              f"Greedy generation, batch 1, prompt {args.prompt} tokens, {args.new_tokens} new tokens, "
              f"{args.gen_repeats} rounds (ours and HF hold the same weights and produced identical tokens):", "",
              "| generator | tokens/s median | tokens/s max |", "|---|---|---|"]  # fmt: skip
    for name, r in rates.items():
        lines.append(f"| {name} | {statistics.median(r):.1f} | {max(r):.1f} |")
    lines.append("")
    lines.append(_ratio("tokens/s, ours cached / HF generate", rates["ours, KV cache"], rates["HF generate (cache)"]))
    lines.append(_ratio("tokens/s, ours cached / ours uncached", rates["ours, KV cache"], rates["ours, no cache"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(GPT2_SIZES), default="124m")
    parser.add_argument("--batch", type=positive_int, default=2)
    parser.add_argument("--length", type=positive_int, default=128, help="tokens per training sequence")
    parser.add_argument("--repeats", type=positive_int, default=10, help="training rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--prompt", type=positive_int, default=32, help="prompt tokens for generation")
    parser.add_argument("--new-tokens", type=positive_int, default=64)
    parser.add_argument("--gen-repeats", type=positive_int, default=5)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run (nano size, 3 rounds)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.length, args.repeats, args.warmup = "nano", 2, 32, 3, 1
        args.prompt, args.new_tokens, args.gen_repeats = 8, 16, 2
    torch.set_num_threads(args.threads)
    print(report(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
