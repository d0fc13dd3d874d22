"""bfloat16 autocast against float32 for ``reid train``'s step on this CPU (issue 18, item 1).

What is timed: the trainer's step (forward under the given autocast, the multi-task loss in
float32, backward, Adam) of the same model on the same P x K batch, once in float32 (the
baseline) and once under ``torch.autocast("cpu", dtype=torch.bfloat16)``, the steps
interleaved (f32, bf16, bf16, f32, ...) so that load from other processes hits both alike;
median step per variant. bf16 is forced here whatever the CPU: the point is to measure what
``--amp`` would give, and whether :func:`reid.engine.optim.cpu_has_native_bf16` is right to
turn it on only where oneDNN runs bf16 natively (AVX512-BF16, AMX).

``--inference``: the embedder's forward instead (``reid embed --backend torch``: eval mode,
``torch.inference_mode``, channels_last), batch ``--batch-p`` x ``--batch-k``, float32 against
bf16 autocast, interleaved the same way.

Run:  .venv/bin/python benchmarks/bench_cpu_bf16.py [--arch resnet18|mobilenet_v2] [--size 128x64]
          [--last-stride 2] [--steps 5] [--inference]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cpu_variants import add_batch_options, fixed_batch, interleaved_medians  # noqa: E402 (beside this script)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_batch_options(ap, arch="resnet18", size="128x64")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    ap.add_argument("--inference", action="store_true", help="time the embedder's forward, not a training step")
    args = ap.parse_args()

    import torch

    from reid.engine.optim import AmpSettings, cpu_has_native_bf16
    from reid.engine.step import apply_gradients, forward_losses
    from reid.losses import LossConfig
    from reid.models import ModelConfig, build_model

    height, width = (int(v) for v in args.size.split("x"))
    images, labels, occluded = fixed_batch(args)
    n = len(images)
    variants = {}
    for name, amp in (("float32", AmpSettings("cpu")), ("bf16", AmpSettings("cpu", torch.bfloat16))):
        torch.manual_seed(0)
        model = build_model(ModelConfig(num_classes=751, arch=args.arch, last_stride=args.last_stride,
                                        num_stripes=4), pretrained=None).train()
        variants[name] = (model, torch.optim.Adam(model.parameters(), lr=3.5e-4), amp)

    if args.inference:
        images = images.contiguous(memory_format=torch.channels_last)
        for model, _, _ in variants.values():
            model.eval().to(memory_format=torch.channels_last)

    def step(name: str) -> float:
        model, optimizer, amp = variants[name]
        start = time.perf_counter()
        if args.inference:
            with torch.inference_mode(), amp.autocast():
                model(images)
        else:
            losses = forward_losses(model, images, labels, occluded, LossConfig(alpha=1.0), amp)
            apply_gradients(losses.total, optimizer)
        return time.perf_counter() - start

    medians = interleaved_medians(step, list(variants), args.steps)
    what = "inference forward (embed)" if args.inference else "training step"
    print(f"{what}, {args.arch} {height}x{width} last stride {args.last_stride}, {n} images, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16 (oneDNN): {cpu_has_native_bf16()}; median of {args.steps} interleaved runs")
    for name, median in medians.items():
        print(f"  {name:<8} {median:8.3f} s/{'batch' if args.inference else 'step'} {n / median:8.1f} images/s")
    print(f"ratio bf16 / float32 throughput: {medians['float32'] / medians['bf16']:.2f}x")


if __name__ == "__main__":
    main()
