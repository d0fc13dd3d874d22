"""Benchmark of reid.metrics.evaluate against one np.argsort of the same matrix.

Market-sized random matrix (issue 3): 3368 queries x 15913 gallery rows, float32, 751
identities, 6 cameras. Reported beside it, in the same run:

* one ``np.argsort(distmat, axis=1)`` of the same matrix (the target: evaluate must be no
  slower than this one sort);
* the steps of torchreid's / fast-reid's pure-Python ``eval_market1501`` (re-written here,
  with a stable sort), timed on a subset of queries and scaled, and used to check that
  evaluate gives the same numbers on that subset;
* peak extra memory of evaluate (tracemalloc: numpy allocations are traced), in a separate,
  untimed run.

Run:  .venv/bin/python benchmarks/bench_evaluate.py [--quick] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np

from reid.metrics import evaluate


def loop_reference(
    d: np.ndarray, qp: np.ndarray, gp: np.ndarray, qc: np.ndarray, gc: np.ndarray, max_rank: int
) -> tuple[np.ndarray, float, float]:
    """The steps of torchreid's / fast-reid's pure-Python ``eval_market1501``, re-written:
    sort every row (stable here), a [Q, G] match matrix, then per query: drop, cumsum, and
    precision at every position by a Python list comprehension. Junk (-1) rows are dropped
    too (those libraries never load them)."""
    order = np.argsort(d, axis=1, kind="stable")
    matches = (gp[order] == qp[:, None]).astype(np.int32)
    cmcs, aps, inps = [], [], []
    for i in range(d.shape[0]):
        row = order[i]
        keep = ~(((gp[row] == qp[i]) & (gc[row] == qc[i])) | (gp[row] == -1))
        raw = matches[i][keep]
        if not np.any(raw):
            continue
        cum = raw.cumsum()
        last = np.max(np.where(raw == 1))
        inps.append(cum[last] / (last + 1.0))
        cmc = cum.copy()
        cmc[cmc > 1] = 1
        cmcs.append(cmc[:max_rank])
        precision = np.asarray([x / (k + 1.0) for k, x in enumerate(cum)]) * raw
        aps.append(precision.sum() / raw.sum())
    cmc = np.asarray(cmcs).astype(np.float32).sum(0) / len(cmcs)
    return cmc, float(np.mean(aps)), float(np.mean(inps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions")
    args = ap.parse_args()
    num_q, num_g, num_ids, num_cams = (3368, 15913, 751, 6) if not args.quick else (400, 2000, 100, 6)
    sub = 300 if not args.quick else 100
    rng = np.random.default_rng(0)
    gp = rng.integers(1, num_ids + 1, num_g)
    gc = rng.integers(0, num_cams, num_g)
    qp = rng.integers(1, num_ids + 1, num_q)
    qc = rng.integers(0, num_cams, num_q)
    d = rng.random((num_q, num_g), dtype=np.float32)
    print(f"distmat {num_q} x {num_g} float32, {num_ids} identities, {num_cams} cameras; "
          f"repeat {args.repeat}")

    # Same numbers as the per-query loop on a subset (and the loop's time, scaled).
    t = time.perf_counter()
    ref_cmc, ref_map, ref_minp = loop_reference(d[:sub], qp[:sub], gp, qc[:sub], gc, 50)
    t_loop = (time.perf_counter() - t) * num_q / sub
    res = evaluate(d[:sub], qp[:sub], gp, qc[:sub], gc)
    same = (
        np.array_equal(res.cmc, ref_cmc)
        and abs(res.mAP - ref_map) < 1e-12
        and abs(res.mINP - ref_minp) < 1e-12
    )
    print(f"equal to the pure-Python protocol loop on {sub} queries: {same}")

    t_sort, t_eval = [], []
    for _ in range(args.repeat):  # interleaved, so that machine noise hits both alike
        t = time.perf_counter()
        idx = np.argsort(d, axis=1)
        t_sort.append(time.perf_counter() - t)
        del idx
        t = time.perf_counter()
        res = evaluate(d, qp, gp, qc, gc)
        t_eval.append(time.perf_counter() - t)

    tracemalloc.start()
    evaluate(d, qp, gp, qc, gc)
    _, peak_eval = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    idx = np.argsort(d, axis=1)
    _, peak_sort = tracemalloc.get_traced_memory()
    del idx
    tracemalloc.stop()

    fmt = lambda ts: ", ".join(f"{x:.3f}" for x in ts)  # noqa: E731
    print(f"R1 {100 * res.rank(1):.2f}  mAP {100 * res.mAP:.2f}  mINP {100 * res.mINP:.2f}  "
          f"valid {res.num_valid_queries}  skipped {res.num_skipped_queries}")
    print(f"np.argsort(distmat, axis=1): min {min(t_sort):.3f} s  (runs: {fmt(t_sort)})")
    print(f"evaluate:                    min {min(t_eval):.3f} s  (runs: {fmt(t_eval)})")
    print(f"pure-Python protocol loop (scaled from {sub} queries): {t_loop:.1f} s")
    print(f"evaluate / argsort: {min(t_eval) / min(t_sort):.2f} (min), "
          f"{statistics.median(t_eval) / statistics.median(t_sort):.2f} (median)   target <= 1")
    print(f"pure-Python protocol loop / argsort: {t_loop / min(t_sort):.1f}")
    print(f"peak extra memory: evaluate {peak_eval / 2**20:.0f} MiB (target < 1024), "
          f"argsort {peak_sort / 2**20:.0f} MiB (its int64 result)")


if __name__ == "__main__":
    main()
