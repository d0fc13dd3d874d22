"""Benchmark: one CPU training step of ``reid train`` in channels-last (what the trainer does)
against the same step in PyTorch's default contiguous layout (the baseline, measured in the
same run on the same batch).

The step is the trainer's: AlignedReID forward (global + stripe branch, identity and OBC
heads), the multi-task loss with alpha 1 (global and aligned-local TriHard, identity CE),
backward and an Adam step, float32, on a P x K batch of clean images already in memory.
Both variants start from the same random weights; their steps are interleaved (the order
reversed every other round) so that load from other processes hits both alike, and the
median of each variant's CPU time per step (``time.process_time``: all of this process's
threads) is reported, with the ratio contiguous / channels-last (above 1: channels-last is
faster).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cpu_channels_last.py
          [--arch mobilenet_v2] [--size 256x128] [--last-stride 2] [--stripes 8]
          [--batch-p 16 --batch-k 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from reid.engine.optim import AmpSettings
from reid.engine.step import apply_gradients, forward_losses
from reid.losses import LossConfig
from reid.models.aligned import ModelConfig, build_model

LAYOUTS: tuple[str, ...] = ("contiguous", "channels_last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="mobilenet_v2")
    ap.add_argument("--size", default="256x128", help="input HxW")
    ap.add_argument("--last-stride", type=int, default=2)
    ap.add_argument("--stripes", type=int, default=8)
    ap.add_argument("--batch-p", type=int, default=16)
    ap.add_argument("--batch-k", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=4, help="timed steps per variant (after one warm-up step)")
    args = ap.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    n = args.batch_p * args.batch_k
    torch.manual_seed(0)
    images = torch.randn(n, 3, height, width)
    labels = torch.arange(args.batch_p).repeat_interleave(args.batch_k)
    occluded = torch.zeros(n, dtype=torch.bool)
    config = ModelConfig(num_classes=751, arch=args.arch, last_stride=args.last_stride, num_stripes=args.stripes)
    variants = {}
    for layout in LAYOUTS:
        torch.manual_seed(0)
        model = build_model(config, pretrained=None).train()
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        variants[layout] = (model, torch.optim.Adam(model.parameters(), lr=3.5e-4))

    def step(layout: str) -> float:
        model, optimizer = variants[layout]
        x = images.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else images
        start = time.process_time()
        losses = forward_losses(model, x, labels, occluded, LossConfig(alpha=1.0), AmpSettings("cpu"))
        apply_gradients(losses.total, optimizer)
        return time.process_time() - start

    for layout in LAYOUTS:  # warm-up
        step(layout)
    times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for r in range(args.rounds):
        for layout in LAYOUTS if r % 2 == 0 else LAYOUTS[::-1]:
            times[layout].append(step(layout))
    median = {layout: statistics.median(t) for layout, t in times.items()}
    print(f"{args.arch} {args.size}, last stride {args.last_stride}, {args.stripes} stripes, batch {n}, "
          f"{torch.get_num_threads()} thread(s), float32; CPU seconds per training step (median of {args.rounds}):")
    for layout in LAYOUTS:
        print(f"  {layout:<14} {median[layout]:7.3f} s  {n / median[layout]:6.1f} images per CPU-second")
    print(f"  ratio contiguous / channels_last: {median['contiguous'] / median['channels_last']:.2f}x")


if __name__ == "__main__":
    main()
