"""Benchmark: one CPU training step of ``reid train`` in channels-last (what the trainer does)
against the same step in PyTorch's default contiguous layout (the baseline, measured in the
same run on the same batch); with ``--mode eval``, one evaluation forward pass (what
``reid eval``, a study's evaluation and training's validation run: eval mode, inference mode)
in both layouts.

The step is the trainer's: AlignedReID forward (global + stripe branch, identity and OBC
heads), the multi-task loss with alpha 1 (global and aligned-local TriHard, identity CE),
backward and an Adam step, float32, on a P x K batch of clean images already in memory.
Both variants start from the same random weights; their steps are interleaved (the order
reversed every other round) so that load from other processes hits both alike, and the
median of each variant's CPU time per step (``time.process_time``: all of this process's
threads) is reported, with the ratio contiguous / channels-last (above 1: channels-last is
faster).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cpu_channels_last.py
          [--mode train|eval] [--arch mobilenet_v2] [--size 256x128] [--last-stride 2] [--stripes 8]
          [--batch-p 16 --batch-k 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cpu_variants import add_batch_options, fixed_batch, interleaved_medians  # noqa: E402 (beside this script)
from reid.engine.optim import AmpSettings
from reid.engine.step import apply_gradients, forward_losses
from reid.losses import LossConfig
from reid.models.aligned import ModelConfig, build_model

LAYOUTS: tuple[str, ...] = ("contiguous", "channels_last")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_batch_options(ap, arch="mobilenet_v2", size="256x128")
    ap.add_argument("--stripes", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4, help="timed steps per variant (after one warm-up step)")
    ap.add_argument("--mode", choices=("train", "eval"), default="train",
                    help="train: forward, losses, backward, Adam step; eval: the evaluation forward pass")
    args = ap.parse_args()
    images, labels, occluded = fixed_batch(args)
    n = len(images)
    config = ModelConfig(num_classes=751, arch=args.arch, last_stride=args.last_stride, num_stripes=args.stripes)
    variants = {}
    for layout in LAYOUTS:
        torch.manual_seed(0)
        model = build_model(config, pretrained=None).train(args.mode == "train")
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        # eval mode times the forward pass alone: no optimiser to build
        optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4) if args.mode == "train" else None
        variants[layout] = (model, optimizer)

    def step(layout: str) -> float:
        model, optimizer = variants[layout]
        x = images.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else images
        start = time.process_time()
        if args.mode == "eval":
            with torch.inference_mode():
                model(x)
        else:
            losses = forward_losses(model, x, labels, occluded, LossConfig(alpha=1.0), AmpSettings("cpu"))
            apply_gradients(losses.total, optimizer)
        return time.process_time() - start

    median = interleaved_medians(step, LAYOUTS, args.rounds)
    print(f"{args.arch} {args.size}, last stride {args.last_stride}, {args.stripes} stripes, batch {n}, "
          f"{torch.get_num_threads()} thread(s), float32; CPU seconds per "
          f"{'training step' if args.mode == 'train' else 'evaluation forward pass'} (median of {args.rounds}):")
    for layout in LAYOUTS:
        print(f"  {layout:<14} {median[layout]:7.3f} s  {n / median[layout]:6.1f} images per CPU-second")
    print(f"  ratio contiguous / channels_last: {median['contiguous'] / median['channels_last']:.2f}x")


if __name__ == "__main__":
    main()
