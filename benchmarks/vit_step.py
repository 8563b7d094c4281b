"""ViT-B/16 training step and inference: timm's LayerNorm ViT vs derf_zoo's LayerNorm and Derf ViTs, time and
activation memory (peak CUDA memory on a GPU), as ratios measured side by side in one run.

``derf-zoo bench vit`` with the full run's defaults (7 rounds, batch 8); later flags override them.

    python benchmarks/vit_step.py [--device cuda] [--batch 8] [--repeats 7]
"""

import sys

from derf_zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "vit", "--repeats", "7", "--batch", "8", *sys.argv[1:]]))
