"""DiT-B/4 training step (forward + backward + AdamW) and DDPM sampling on 32x32x4 latents: diffusers'
DiTTransformer2DModel vs derf_zoo's LayerNorm and Derf DiTs, time and activation memory as ratios measured side by
side in one run (derf_zoo/commands/bench_dit.py).

    python benchmarks/dit_step.py [--device cpu] [--batch 8] [--repeats 5] [--threads 2] [--quick] [--out FILE.md]
"""

import argparse
from pathlib import Path

from derf_zoo.commands.bench_dit import add_dit_arguments, main_dit_step

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dit_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = parser.parse_args()
    text = main_dit_step(args)
    if args.out is not None:
        args.out.write_text("# DiT step benchmark (benchmarks/dit_step.py)\n\n" + text + "\n")
