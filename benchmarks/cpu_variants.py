"""What the CPU step benchmarks share (bench_cpu_bf16.py, bench_cpu_channels_last.py): the
batch options, one fixed P x K batch, and interleaved timing of variants of one step."""

from __future__ import annotations

import argparse
import statistics
from typing import Callable, Sequence

import torch


def add_batch_options(ap: argparse.ArgumentParser, arch: str, size: str) -> None:
    """--arch, --size HxW, --last-stride, --batch-p, --batch-k."""
    ap.add_argument("--arch", default=arch)
    ap.add_argument("--size", default=size, help="input HxW")
    ap.add_argument("--last-stride", type=int, default=2, choices=[1, 2])
    ap.add_argument("--batch-p", type=int, default=16)
    ap.add_argument("--batch-k", type=int, default=4)


def fixed_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seed-0 random images [P*K, 3, H, W], labels [P*K] (K per identity), occluded [P*K] all False."""
    height, width = (int(v) for v in args.size.split("x"))
    n = args.batch_p * args.batch_k
    torch.manual_seed(0)
    images = torch.randn(n, 3, height, width)
    labels = torch.arange(args.batch_p).repeat_interleave(args.batch_k)
    return images, labels, torch.zeros(n, dtype=torch.bool)


def interleaved_medians(step: Callable[[str], float], names: Sequence[str], rounds: int) -> dict[str, float]:
    """One warm-up call of ``step(name)`` per variant, then ``rounds`` timed calls each, the
    order reversed every other round so that load from other processes hits every variant
    alike; the median of each variant's times."""
    for name in names:
        step(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in (list(names) if round_ % 2 == 0 else list(names)[::-1]):
            times[name].append(step(name))
    return {name: statistics.median(values) for name, values in times.items()}
