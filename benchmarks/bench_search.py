"""Benchmark of `reid search`'s exact blocked top-k against the dense matrix product alone.

Synthetic features (issue 10): --queries x --gallery rows of --dim float32 (default 1,000 x
1,000,000 x 2,048: an 8 GB gallery). The gallery is written once to a raw float32 file in a
temporary folder and memory-mapped, as a gallery larger than memory would be streamed; both
timings below read it through the same page cache, block by block, in the same order.

* search: :func:`reid.inference.search.search_topk` (global Euclidean distance, top --top,
  ties by gallery row), the whole call;
* baseline: the matrix product alone, ``queries @ block.T`` for the same gallery blocks, the
  result thrown away: the FLOPs of one dense [Q, D] x [D, N] product without its [Q, N]
  output (4 GB at the default sizes, which a single product would also have to write).

The target is search <= 1.5x the baseline. Exactness is checked on the first queries against
a stable sort of their full distance rows.

Run:  .venv/bin/python benchmarks/bench_search.py [--quick] [--gallery 1000000] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def write_gallery(path: Path, rows: int, dim: int, block: int = 65536) -> np.memmap:
    """Standard-normal float32 features [rows, dim], written block by block (seeded)."""
    gallery = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, dim))
    generator = torch.Generator().manual_seed(0)
    for start in range(0, rows, block):
        stop = min(rows, start + block)
        gallery[start:stop] = torch.randn(stop - start, dim, generator=generator).numpy()
    gallery.flush()
    # Copy-on-write mapping: read like "r", but writable as torch wants (nothing is written).
    return np.memmap(path, dtype=np.float32, mode="c", shape=(rows, dim))


def matmul_only(queries: torch.Tensor, gallery: np.ndarray, block_rows: int, device: torch.device) -> None:
    with torch.no_grad():
        for start in range(0, gallery.shape[0], block_rows):
            block = torch.as_tensor(gallery[start : start + block_rows]).to(device)
            torch.mm(queries, block.t())
        if device.type == "cuda":
            torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 queries x 100,000 rows (a smoke run)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--gallery", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tmp", default=None, help="folder for the gallery file (default: the system's temporary folder)")
    args = ap.parse_args()
    if args.quick:
        args.queries, args.gallery = 100, 100_000

    from reid.inference.search import ArrayGallery, default_block_rows, search_topk

    device = torch.device(args.device)
    block_rows = default_block_rows(args.queries, args.dim)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; {args.queries} queries x "
          f"{args.gallery} gallery rows x {args.dim}-d float32, top {args.top}, {block_rows} gallery rows per block")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        gallery = write_gallery(Path(tmp) / "gallery.f32", args.gallery, args.dim)
        print(f"(gallery written in {time.perf_counter() - start:.1f} s)")
        queries = torch.randn(args.queries, args.dim, generator=torch.Generator().manual_seed(1))

        start = time.perf_counter()
        matmul_only(queries.to(device), gallery, block_rows, device)
        t_matmul = time.perf_counter() - start
        print(f"dense matmul of the same size (blocked, output dropped): {t_matmul:.2f} s", flush=True)
        start = time.perf_counter()
        found = search_topk(queries, ArrayGallery(gallery), top=args.top, device=device, block_rows=block_rows,
                            progress=False)
        t_search = time.perf_counter() - start
        print(f"search: {t_search:.2f} s | ratio {t_search / t_matmul:.2f}x", flush=True)

        check = 3
        dense = np.concatenate([  # float64 distances of the first queries, one gallery block at a time
            torch.cdist(queries[:check].double(), torch.as_tensor(gallery[i : i + block_rows]).double()).numpy()
            for i in range(0, args.gallery, block_rows)
        ], axis=1)
        expected = np.argsort(dense, axis=1, kind="stable")[:, : args.top]
        exact = bool(np.array_equal(found.indices[:check], expected))
    print(f"top-{args.top} of the first {check} queries equal to a float64 full sort: {exact}")


if __name__ == "__main__":
    main()
