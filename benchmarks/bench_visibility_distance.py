"""Cost of the visibility-weighted aligned distance against the plain one, in the same run.

Sizes: 3368 queries x 15913 gallery rows, 8 stripes of 128-d (Market-1501), random features
and random visibilities; ``--quick``: 500 x 2000.

* baseline: :func:`reid.distance.aligned_local_distance` (the in-place evaluation path);
* measured: :func:`reid.retrieval_distance.visibility_weighted_aligned_distance` (the same blocked
  product and in-place anti-diagonal programme, plus the weights, the pair's weighted mean
  and the imputed cell costs).

Prints each time (median of ``--repeat`` runs) and the ratio measured / baseline.

Run:  .venv/bin/python benchmarks/bench_visibility_distance.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from reid.distance import aligned_local_distance
from reid.retrieval_distance import visibility_weighted_aligned_distance


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 x 2000 pairs instead of Market-1501's")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    m, n = (500, 2000) if args.quick else (3368, 15913)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(m, 8, 128, generator=gen), torch.randn(n, 8, 128, generator=gen)
    vx, vy = torch.rand(m, 8, generator=gen), torch.rand(n, 8, generator=gen)
    plain = _median_seconds(lambda: aligned_local_distance(x, y), args.repeat)
    weighted = _median_seconds(lambda: visibility_weighted_aligned_distance(x, y, vx, vy), args.repeat)
    print(f"{m} x {n} pairs, 8 x 128-d stripes, {torch.get_num_threads()} threads")
    print(f"baseline aligned_local_distance:              {plain:7.2f} s")
    print(f"visibility_weighted_aligned_distance:         {weighted:7.2f} s   ({weighted / plain:.2f}x the baseline)")


if __name__ == "__main__":
    main()
