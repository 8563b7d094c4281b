"""DiT-B/4 training step (forward + backward + AdamW) and DDPM sampling on 32x32x4 latents: diffusers'
DiTTransformer2DModel vs derf_zoo's LayerNorm and Derf DiTs, time and activation memory as ratios measured side by
side in one run (derf_zoo/benchmarking/dit_step.py).

    python benchmarks/dit_step.py [--device cpu] [--batch 8] [--repeats 5] [--threads 2] [--quick] [--out FILE.md]
"""

import argparse
from pathlib import Path

import torch

from derf_zoo.benchmarking.arguments import add_arguments, positive_int
from derf_zoo.benchmarking.dit_step import bench_dit, report
from derf_zoo.devices import check_device


def add_dit_arguments(p: argparse.ArgumentParser) -> None:
    add_arguments(p, repeats=5, batch=8)
    p.add_argument("--quick", action="store_true", help="a tiny DiT (for tests), not DiT-B/4")
    p.add_argument("--sample-steps", type=positive_int, default=5, help="DDPM steps timed (extrapolated to 250)")
    p.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")


def main(args: argparse.Namespace) -> str:
    device = torch.device(check_device(args.device, "--device"))
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    size = "quick" if args.quick else "b4"
    header = (f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, fp32, "
              f"{args.repeats} interleaved rounds")  # fmt: skip
    print(header, flush=True)
    body = report(bench_dit(size, args.batch, device, args.repeats, args.sample_steps), size, args.batch,
                  args.sample_steps)  # fmt: skip
    print(body)
    text = header + "\n\n" + body
    if args.out is not None:
        args.out.write_text("# DiT step benchmark (benchmarks/dit_step.py)\n\n" + text + "\n")
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dit_arguments(parser)
    main(parser.parse_args())
