"""Benchmark of one training step of ``reid train`` beside the bare torchvision classifier.

What is timed (issue 4, "Training step"): images per second and peak memory of the trainer's
step — AlignedReID forward (global + local branch, identity and OBC heads, last stride 1),
the multi-task loss (global and aligned-local TriHard, identity CE, OBC CE), the loss check
the trainer does every step (one device sync), backward and an Adam step — on a P x K batch
already on the device (the input pipeline has its own benchmark, bench_input_pipeline.py).

Baseline, measured in the same run on the same batch: the bare torchvision classifier of
the same depth (``torchvision.models.resnet50(num_classes=751)``, stride 2) with one
cross-entropy loss, backward and an Adam step: the floor any re-ID trainer on that backbone
sits on. The ratio ours / baseline is the price of AlignedReID's head and losses and of
last stride 1, which quadruples layer4's feature map. With our last stride 1 (the default) a
third variant separates the two: the same classifier with last stride 1, so that
ours / that one is the price of the heads and losses alone (stripe branch, mining, aligned
local distance, OBC head, loss check, the optimiser's extra parameters).

Batch: P=16 identities x K=4 images; ``--train-on both`` (this script's default: the paper's
recipe, the heavier one) adds each image's occluded copy, so 128 images a step;
``--train-on clean`` (``reid train``'s default recipe) gives 64.
Both run in channels-last, the trainer's layout on every device (on the CPU since 2026-12-06);
on CUDA with the trainer's AMP (bf16 autocast, or fp16 + GradScaler on GPUs without bf16); the
GPU model is printed.

Timing: the variants in one process, their steps interleaved (baseline, ours, baseline,
...; the order reversed every other round), so that load from other processes on a shared machine hits both alike; the median step
per variant is reported. Memory: each variant again in its own subprocess for two untimed
steps, so that its peak is its own: CUDA ``max_memory_allocated``, CPU the process's peak
resident set (``ru_maxrss``), printed with the resident set just before the first step
(torch, the model and the batch loaded) for reference.

Run:  .venv/bin/python benchmarks/bench_train_step.py [--quick] [--steps N] [--device cpu|cuda]
          [--train-on both|clean] [--last-stride 1|2] [--json-out FILE]
      (--quick: resnet18 at 128x64; --last-stride 2 shows what last stride 1 costs)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

NUM_CLASSES = 751  # Market-1501's training identities


def _status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MiB: VmRSS (now) or VmHWM (peak resident set).

    VmHWM belongs to the process's address space, which exec replaces; ``ru_maxrss`` would
    not do here, it survives fork + exec and reports the parent's peak when that is larger.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def set_last_stride_one(model) -> None:
    """Give a torchvision ResNet classifier last stride 1, as our model's default: layer4's
    first block (its strided conv and its downsample) keeps the 16x8 map at 256x128."""
    block = model.layer4[0]
    (block.conv2 if hasattr(block, "conv3") else block.conv1).stride = (1, 1)  # Bottleneck / BasicBlock
    block.downsample[0].stride = (1, 1)


class Variant:
    """One of the two training steps on a shared batch (built in this process)."""

    def __init__(self, name: str, args: argparse.Namespace, batch: tuple, device, amp) -> None:
        import torch
        import torchvision

        from reid.losses import LossConfig
        from reid.models import ModelConfig, build_model

        self.name, self.batch, self.amp, self.device = name, batch, amp, device
        memory_format = torch.channels_last  # the trainer's layout, on every device
        if name == "ours":
            model = build_model(ModelConfig(num_classes=NUM_CLASSES, arch=args.arch, last_stride=args.last_stride), pretrained=None)
        else:
            model = getattr(torchvision.models, args.arch)(weights=None, num_classes=NUM_CLASSES)
            if name == "baseline-s1":
                set_last_stride_one(model)
        self.model = model.to(device, memory_format=memory_format).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=3.5e-4, weight_decay=5e-4)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp.needs_scaler) if device.type == "cuda" else None
        self.loss_config = LossConfig()

    def step(self) -> float:
        """One training step; returns its wall time in seconds (device synchronised)."""
        import torch
        from torch.nn import functional as F

        from reid.engine.step import apply_gradients, forward_losses, loss_vector

        images, labels, occluded = self.batch
        start = time.perf_counter()
        if self.name == "ours":
            losses = forward_losses(self.model, images, labels, occluded, self.loss_config, self.amp)
            values = loss_vector(losses).tolist()  # the trainer's per-step NaN check (one sync)
            assert all(v == v for v in values)
            apply_gradients(losses.total, self.optimizer, self.scaler)
        else:
            with self.amp.autocast():
                logits = self.model(images)
            apply_gradients(F.cross_entropy(logits.float(), labels), self.optimizer, self.scaler)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def _setup(args: argparse.Namespace):
    import torch

    from reid.engine.optim import resolve_amp

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = resolve_amp(None, device)
    height, width = args.size
    pk = args.batch_p * args.batch_k
    n = pk * (2 if args.train_on == "both" else 1)
    torch.manual_seed(0)
    memory_format = torch.channels_last  # the trainer's layout, on every device
    images = torch.randn(n, 3, height, width, device=device).contiguous(memory_format=memory_format)
    labels = torch.arange(args.batch_p, device=device).repeat_interleave(args.batch_k).repeat(n // pk)
    occluded = torch.zeros(n, dtype=torch.bool, device=device)
    occluded[pk:] = args.train_on == "both"
    return device, amp, (images, labels, occluded)


def measure_memory(args: argparse.Namespace) -> dict:
    """Peak memory of two steps of one variant, alone in this process (untimed)."""
    import torch

    device, amp, batch = _setup(args)
    variant = Variant(args.only, args, batch, device, amp)
    rss_before = _status_mb("VmRSS")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):  # the second step also holds Adam's moments
        variant.step()
    if device.type == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated() / 2**20, "rss_before_mb": rss_before}
    return {"peak_mb": _status_mb("VmHWM"), "rss_before_mb": rss_before}


def variant_names(args: argparse.Namespace) -> tuple[str, ...]:
    """The classifier floor, the same classifier at our last stride (when that is 1), ours."""
    return ("baseline", "baseline-s1", "ours") if args.last_stride == 1 else ("baseline", "ours")


def measure_time(args: argparse.Namespace) -> dict:
    """Both variants in this process, their steps interleaved (A B A B ...) so that load from
    other processes on a shared machine hits both alike; median step time per variant."""
    import torch

    device, amp, batch = _setup(args)
    variants = [Variant(name, args, batch, device, amp) for name in variant_names(args)]
    for _ in range(args.warmup):
        for variant in variants:
            variant.step()
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for round_ in range(args.steps):
        # Alternate the order too (A B, B A, ...): neither variant always runs right after the other.
        for variant in variants if round_ % 2 == 0 else variants[::-1]:
            times[variant.name].append(variant.step())
    n = len(batch[0])
    out = {"device": str(device), "images": n, "amp": amp.name, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    for name, values in times.items():
        values.sort()
        out[name] = {"median_s": values[len(values) // 2], "min_s": values[0], "images_per_s": n / values[len(values) // 2]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="resnet18 at 128x64 (a smoke run)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--batch-p", type=int, default=16)
    ap.add_argument("--batch-k", type=int, default=4)
    ap.add_argument("--train-on", default="both", choices=["both", "clean"])
    ap.add_argument("--last-stride", type=int, default=1, choices=[1, 2],
                    help="our model's last stride (1 = the trainer's default; 2 = the classifier's)")
    ap.add_argument("--json-out", type=Path, default=None,
                    help="also write the figures as JSON (scripts/gpu_check.sh reads them)")
    ap.add_argument("--only", choices=["ours", "baseline", "baseline-s1"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.arch, args.size = ("resnet18", (128, 64)) if args.quick else ("resnet50", (256, 128))
    if args.only:
        print(json.dumps(measure_memory(args)))
        return

    timing = measure_time(args)
    memory = {}
    for variant in variant_names(args):
        command = [sys.executable, __file__, "--only", variant, "--device", args.device, "--batch-p", str(args.batch_p),
                   "--batch-k", str(args.batch_k), "--train-on", args.train_on, "--last-stride", str(args.last_stride)]
        command += ["--quick"] if args.quick else []
        proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            sys.exit(f"{variant} memory run failed:\n{proc.stderr[-3000:]}")
        memory[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    ours, base = timing["ours"], timing["baseline"]
    where = timing.get("gpu", f"CPU, {timing['threads']} torch threads")
    print(f"training step, {args.arch} at {args.size[0]}x{args.size[1]}, P={args.batch_p} K={args.batch_k} "
          f"train-on {args.train_on} = {timing['images']} images, our last stride {args.last_stride}, {where}, "
          f"amp {timing['amp']}, "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up")
    peak = "peak MiB" if timing["device"].startswith("cuda") else "peak RSS MiB"
    print(f"{'variant':<46} {'s/step':>8} {'min s':>8} {'images/s':>9} {peak:>12} {'RSS before':>10}")
    names = {"baseline": f"torchvision {args.arch} classifier, CE (floor)",
             "baseline-s1": "the same classifier, last stride 1 (as ours)",
             "ours": "AlignedReID + OBC, multi-task loss"}
    for key in variant_names(args):
        t, m = timing[key], memory[key]
        print(f"{names[key]:<46} {t['median_s']:>8.3f} {t['min_s']:>8.3f} {t['images_per_s']:>9.1f} "
              f"{m['peak_mb']:>12.0f} {m['rss_before_mb']:>10.0f}")
    # On a shared machine the fastest step is the least disturbed one: report both ratios.
    print(f"ratio ours / baseline: throughput {ours['images_per_s'] / base['images_per_s']:.2f}x (medians), "
          f"{base['min_s'] / ours['min_s']:.2f}x (fastest steps); "
          f"peak memory {memory['ours']['peak_mb'] / memory['baseline']['peak_mb']:.2f}x")
    if "baseline-s1" in timing:
        same = timing["baseline-s1"]
        print(f"ratio ours / classifier at the same last stride: throughput "
              f"{ours['images_per_s'] / same['images_per_s']:.2f}x (medians), {same['min_s'] / ours['min_s']:.2f}x "
              f"(fastest steps); peak memory {memory['ours']['peak_mb'] / memory['baseline-s1']['peak_mb']:.2f}x")
    if args.json_out is not None:
        args.json_out.write_text(json.dumps({
            "arch": args.arch, "size": list(args.size), **timing, "memory": memory,
            "throughput_ratio": ours["images_per_s"] / base["images_per_s"],
            "memory_ratio": memory["ours"]["peak_mb"] / memory["baseline"]["peak_mb"],
            **({"same_stride_throughput_ratio": ours["images_per_s"] / timing["baseline-s1"]["images_per_s"]}
               if "baseline-s1" in timing else {}),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
