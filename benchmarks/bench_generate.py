"""Generation throughput: `occsim generate` beside the one-at-a-time loop and the decode-bound limit.

On a Market-sized synthetic source (1501 identities x 22 images, about 33,000 JPEGs of
128x64, made once with `occsim synth`'s library function into a cache folder) it measures,
in the same run and on the same page-cached files:

- generate: :func:`occsim.generate.generate` (default types=mean, workers=2), source images
  per second, the whole run (parsing, box planning, decoding, occluding, HDF5 writing);
- (a) one-at-a-time: the paper's public code's way, one process, per image cv2.imread,
  occlude (the same ``occlude_mean``), cv2.imwrite one JPEG into a temporary folder;
- (b) decode-bound limit: cv2.imread of every file in one process, times the workers.

Each figure is the best of ``--repeat`` runs (the machine may be shared). Targets: generate
>= 4x (a) and >= 0.5x (b).

    python benchmarks/bench_generate.py            # full size (~41,000 images)
    python benchmarks/bench_generate.py --quick    # ~4,000 images
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from occsim.generate import GenerateConfig, generate  # noqa: E402
from occsim.occluders import OccluderParams, occlude_mean  # noqa: E402
from occsim.sources import read_source  # noqa: E402
from occsim.synth import SynthConfig, synthesize_market  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / "data" / "bench"


def ensure_source(quick: bool, workers: int) -> Path:
    """The cached synthetic source, made on the first run."""
    n_ids = 150 if quick else 1501
    root = CACHE / f"synthetic-market-{n_ids}x22"
    if not root.exists():
        print(f"making the synthetic source in {root} (once) ...", flush=True)
        synthesize_market(root, SynthConfig(n_ids=n_ids, images_per_id=22), workers=workers)
    return root


@dataclass
class Measure:
    """One measurement: images, wall seconds, CPU seconds (all processes involved)."""

    images: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.images / self.wall

    def cpu_rate(self, cores: int) -> float:
        """Images per second if ``cores`` idle cores were fully used (CPU-time estimate)."""
        return cores * self.images / self.cpu


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _children_cpu() -> dict[int, float]:
    """CPU seconds used so far by each child process (the loky workers); Linux /proc only."""
    tick, me, out = os.sysconf("SC_CLK_TCK"), os.getpid(), {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                out[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def decode_rate(paths: list[str]) -> Measure:
    """(b) cv2 JPEG decoding, one process."""
    wall, cpu = _clock()
    for path in paths:
        if cv2.imread(path, cv2.IMREAD_COLOR) is None:
            raise RuntimeError(f"cannot decode {path}")
    return Measure(len(paths), time.perf_counter() - wall, time.process_time() - cpu)


def one_at_a_time_rate(paths: list[str], params: OccluderParams) -> Measure:
    """(a) read, occlude, write one JPEG per image, one process."""
    rng = np.random.default_rng(0)  # one generator for the loop: cheaper than per image, favours (a)
    out_dir = tempfile.mkdtemp(prefix="bench-one-at-a-time-")
    try:
        wall, cpu = _clock()
        for i, path in enumerate(paths):
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            occluded, _ = occlude_mean(image, rng, params)
            cv2.imwrite(os.path.join(out_dir, f"{i:06d}.jpg"), occluded)
        return Measure(len(paths), time.perf_counter() - wall, time.process_time() - cpu)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def generate_rate(src: Path, types: tuple[str, ...], workers: int) -> Measure:
    """`occsim generate` end to end (parsing, planning, decoding, occluding, writing)."""
    out_dir = tempfile.mkdtemp(prefix="bench-generate-")
    try:
        before = _children_cpu()
        wall, cpu = _clock()
        report = generate(GenerateConfig(src=src, out=Path(out_dir) / "occluded.h5", types=types,
                                         workers=workers, force=True, progress=False), echo=lambda line: None)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = _children_cpu()
        cpu += sum(t - before.get(pid, 0.0) for pid, t in after.items())
        return Measure(report.images, wall, cpu)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~4,000 images instead of ~41,000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--types", default="mean", help="comma list of occluder types for generate")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each")
    args = parser.parse_args()

    src = ensure_source(args.quick, args.workers)
    source = read_source(src)
    paths = [str(src / r.path) for records in source.splits.values() for r in records]
    for path in paths:  # warm the page cache so every measurement reads from memory
        with open(path, "rb") as fh:
            fh.read()
    types = tuple(t for t in args.types.split(",") if t)
    cores = min(args.workers, os.cpu_count() or 1)
    print(f"source {src}: {len(paths)} images; types={','.join(types)}, workers={args.workers}, "
          f"cores={os.cpu_count()}, best of {args.repeat}; load average {os.getloadavg()[0]:.2f}", flush=True)

    runs: dict[str, list[Measure]] = {"decode": [], "one": [], "generate": []}
    for run in range(args.repeat):
        # Interleaved, so that a burst of load from other users hits every figure alike.
        runs["decode"].append(decode_rate(paths))
        runs["one"].append(one_at_a_time_rate(paths, OccluderParams()))
        runs["generate"].append(generate_rate(src, types, args.workers))
        print(f"  run {run + 1}" + ("" if run else " (generate's workers start cold)") + ": "
              + ", ".join(f"{k} {v[-1].rate:,.0f} img/s" for k, v in runs.items()), flush=True)
    best = {k: max(v, key=lambda m: m.rate) for k, v in runs.items()}
    leanest = {k: min(v, key=lambda m: m.cpu / m.images) for k, v in runs.items()}

    def table(title: str, gen: float, one: float, decode: float) -> None:
        limit = decode * args.workers
        print(f"\n{title}")
        print(f"  {'occsim generate (workers=%d)' % args.workers:<46}{gen:>10,.0f} img/s")
        print(f"  {'(a) one at a time: imread+occlude+imwrite':<46}{one:>10,.0f} img/s")
        print(f"  {'(b) decode-bound: imread x %d workers' % args.workers:<46}{limit:>10,.0f} img/s"
              f"   (one process {decode:,.0f})")
        print(f"  generate / (a) = {gen / one:.2f}x (target >= 4)   {'PASS' if gen / one >= 4 else 'FAIL'}")
        print(f"  generate / (b) = {gen / limit:.2f}x (target >= 0.5) {'PASS' if gen / limit >= 0.5 else 'FAIL'}")

    table("wall clock (best run of each):", best["generate"].rate, best["one"].rate, best["decode"].rate)
    table(f"CPU time (images per CPU second; generate's on {cores} fully used cores -- what an idle machine gives):",
          leanest["generate"].cpu_rate(cores), leanest["one"].cpu_rate(1), leanest["decode"].cpu_rate(1))
    g = leanest["generate"]
    print(f"\ngenerate CPU: {g.cpu / g.images * 1e6:.0f} us per image over all processes; "
          f"load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
