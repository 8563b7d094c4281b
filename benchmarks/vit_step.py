"""ViT-B/16 training step and inference: timm's LayerNorm ViT vs derf_zoo's LayerNorm and Derf ViTs, time and
activation memory (peak CUDA memory on a GPU), as ratios measured side by side in one run.

    python benchmarks/vit_step.py [--device cuda] [--batch 8] [--repeats 7]
"""

import argparse

from derf_zoo.commands.bench import add_arguments, main_vit_step

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, repeats=7, batch=8)
    main_vit_step(parser.parse_args())
