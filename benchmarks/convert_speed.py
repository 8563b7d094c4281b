"""How long the fitted conversion of a ViT-B/16 takes: one forward pass, and the same pass fitting all 25 norms.

The fit runs inside one forward pass (a pre-forward hook fits each layer on the input it receives), so its cost is
that pass plus the per-layer fits; this prints both, measured side by side on the same images, and their ratio.

    python benchmarks/convert_speed.py --images 1024 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from derf_zoo import convert_norms, create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Random LayerNorm weights: the time of a fit does not depend on what the weights learned.
    model = create_model("vit_base_patch16_224", norm="layernorm", global_pool="token").eval()
    images = torch.randn(args.images, 3, 224, 224)
    start = time.perf_counter()
    with torch.no_grad():
        model(images)
    forward = time.perf_counter() - start
    student = copy.deepcopy(model)
    start = time.perf_counter()
    report = convert_norms(student, "derf", fit=images)
    fit = time.perf_counter() - start
    print(f"ViT-B/16, {args.images} images of 224 px, {torch.get_num_threads()} threads, "
          f"{len(report.fit)} norms fitted")
    print(f"  forward pass alone:            {forward:8.1f} s")
    print(f"  forward pass fitting the norms: {fit:7.1f} s  ({fit / forward:.2f}x the forward pass; "
          f"{(fit - forward) / len(report.fit):.2f} s per layer on top)")


if __name__ == "__main__":
    main()
