"""wav2vec 2.0 Base training step (forward + backward of the pretraining loss) on CPU: transformers'
``Wav2Vec2ForPreTraining`` vs derf_zoo's LayerNorm model (same config and weights, imported with
``from_transformers``) vs derf_zoo's Derf model; the three are timed interleaved in one run, and each ratio is
reported as the median over rounds with its min-max spread.

    python benchmarks/wav2vec2_step.py [--batch 4] [--seconds 5] [--repeats 5] [--threads 2] [--out FILE.md]
    python benchmarks/wav2vec2_step.py --quick      # a tiny config in a few seconds (what the test runs)

Targets (issue 11): ours LN / HF <= 1.05, ours Derf / ours LN <= 1.05. Both models run in training mode with
every dropout as configured (Base: 0.1) and LayerDrop off (a random skip would change the work per step);
masks and negatives are drawn once and fed to all three. Ours runs fairseq's loss (feature penalty weight 10,
gradient multiplier 0.1 into the CNN); HF has neither (their cost is one reduction and one scaling).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from derf_zoo.models.wav2vec2 import Wav2Vec2, from_transformers
from derf_zoo.models.wav2vec2.span_masking import compute_mask_indices, sample_negative_indices

QUICK = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
             num_codevectors_per_group=16, codevector_dim=32, proj_codevector_dim=32, num_negatives=10)  # fmt: skip


def build(quick: bool) -> tuple[torch.nn.Module, Wav2Vec2, Wav2Vec2]:
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(mask_time_prob=0.65, layerdrop=0.0, **(QUICK if quick else {}))
    hf = Wav2Vec2ForPreTraining(cfg)
    fairseq_loss = {"feature_grad_mult": 0.1, "feature_penalty_weight": 10.0}
    ln = from_transformers(hf, **fairseq_loss)
    derf = Wav2Vec2(**{**ln.model_args, "norm": "derf"})
    return hf.train(), ln.train(), derf.train()


def step(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, negatives: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    out = model(x, mask_time_indices=mask, sampled_negative_indices=negatives)
    out.loss.backward()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    hf, ln, derf = build(args.quick)
    samples = int(args.seconds * 16000)
    x = torch.randn(args.batch, samples, generator=torch.Generator().manual_seed(0))
    frames = int(ln.output_lengths(torch.tensor(samples)))
    g = torch.Generator().manual_seed(1)
    mask = compute_mask_indices((args.batch, frames), 0.65, 10, min_masks=2, generator=g)
    negatives = sample_negative_indices(mask, ln.num_negatives, generator=g)
    models = {"hf_ln": hf, "ours_ln": ln, "ours_derf": derf}
    for model in models.values():  # warm-up: allocator, one-time kernels
        step(model, x, mask, negatives)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.repeats):
        order = list(models) if r % 2 == 0 else list(reversed(models))  # alternate the order against drift
        for name in order:
            times[name].append(step(models[name], x, mask, negatives))
    ratio_hf = [a / b for a, b in zip(times["ours_ln"], times["hf_ln"])]
    ratio_derf = [a / b for a, b in zip(times["ours_derf"], times["ours_ln"])]

    def summary(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"

    config = "tiny (--quick)" if args.quick else "Base (12 x 768, 7 x 512 CNN, 2 x 320 codes, 100 negatives)"
    lines = [
        "# wav2vec 2.0 training step on CPU (forward + backward)",
        "",
        f"- config: {config}; batch {args.batch} x {args.seconds:g} s of 16 kHz audio ({frames} frames, "
        f"{int(mask.sum())} masked); training mode, dropout as configured, LayerDrop off",
        f"- machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} thread(s), {args.repeats} interleaved rounds after one warm-up (shared machine: "
        "other jobs were running, so read the spread)",
        "",
        "| model | median step (s) | min | max |",
        "|---|---|---|---|",
    ]
    for name, values in times.items():
        lines.append(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    lines += [
        "",
        "| ratio (per round, median and spread) | value | target |",
        "|---|---|---|",
        f"| ours LN / HF Wav2Vec2ForPreTraining | {summary(ratio_hf)} | <= 1.05 |",
        f"| ours Derf / ours LN | {summary(ratio_derf)} | <= 1.05 |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny config, 2 x 0.5 s, 2 rounds")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.repeats = 2, 0.5, 2
    for name in ("batch", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seconds * 16000 < 400:
        parser.error(f"--seconds {args.seconds} is shorter than the CNN's receptive field (400 samples)")
    text = run(args)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])
