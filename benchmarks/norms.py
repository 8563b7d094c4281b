"""Norm layers at ViT-B (32, 197, 768) and GPT-2 (8, 1024, 768) shapes: forward, forward+backward and the
activations kept for the backward, as ratios to nn.LayerNorm and to a copy, all measured in one run.

    python benchmarks/norms.py [--device cuda] [--dtype bfloat16] [--compile] [--repeats 25]
"""

import argparse

from derf_zoo.commands.bench import add_arguments, main_norms

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, repeats=25, batch=8)
    main_norms(parser.parse_args())
