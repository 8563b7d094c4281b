"""The DiT-B/4 forward pass (what one sampling step runs) of diffusers' DiT and our LN and Derf DiTs, timed as
process CPU time on one thread: on a shared machine contention inflates CPU time far less than wall time.

    python benchmarks/dit_forward_cputime.py [--rounds 5] [--batch 8]
"""

import argparse
import statistics

import torch

from derf_zoo.benchmarking.dit_step import build_models
from derf_zoo.benchmarking.timing import time_rounds

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {name: m.eval() for name, m in build_models("b4").items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 4, 32, 32, generator=g)
    t, y = torch.randint(0, 1000, (args.batch,), generator=g), torch.randint(0, 1000, (args.batch,), generator=g)
    with torch.no_grad():  # one warm-up call each, then interleaved rounds
        cpu_ms = time_rounds({name: lambda m=m: m(x, t, y) for name, m in models.items()}, args.rounds, 1).cpu
    times = {name: [ms / 1e3 for ms in v] for name, v in cpu_ms.items()}
    ref = statistics.median(next(iter(times.values())))
    for name, v in times.items():
        print(f"{name}: CPU s min {min(v):.3f}, median {statistics.median(v):.3f} ({statistics.median(v) / ref:.3f}x)")
