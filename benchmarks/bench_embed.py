"""Benchmark of `reid embed` against a plain loop, and of ONNX Runtime against PyTorch.

Same run, same model (random init; speed does not depend on the weights), same images:

* embed: images/s of :func:`reid.inference.embed.run_embed` (listing, decoding, batching,
  forward, the features file written; the whole call timed) beside a plain loop that a
  person would write first: PIL open, torchvision Resize + ToTensor + Normalize, model
  forward, one image at a time (issue 10's target: >= 5x on 2 CPU cores);
* forward: ONNX Runtime (CPU) on the file `reid export` writes beside PyTorch eager on the
  CPU, batch 1 and batch 64, on the same input.

Images: the first --images crops of data/CUHK01/campus when present (real 160x60 PNGs),
else synthetic JPEGs. The machine's cores are shared with other sessions: keep runs short
and read the ratios (each pair is measured back to back), not the absolute rates.

Run:  .venv/bin/python benchmarks/bench_embed.py [--quick] [--arch resnet50] [--images 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` crops in ``folder``: real CUHK01 files when available, else synthetic JPEGs."""
    real = sorted((REPO / "data" / "CUHK01" / "campus").glob("*.png"))[:count]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        if i < len(real):
            image = cv2.imread(str(real[i]))
        else:
            rng = np.random.default_rng(i)
            image = np.clip(rng.integers(30, 226, size=3) + rng.normal(0, 20, size=(160, 64, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def plain_loop(model: torch.nn.Module, paths: list[Path], size: tuple[int, int]) -> float:
    """images/s of PIL + torchvision transforms + forward, one image at a time."""
    from PIL import Image
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB")
            out = model(transform(image).unsqueeze(0))
            out.global_feat.numpy()
    return len(paths) / (time.perf_counter() - start)


def time_forward(fn, x: np.ndarray, repeat: int) -> float:
    """Best seconds per call of ``fn(x)`` over ``repeat`` calls (after one warm-up call)."""
    fn(x)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="resnet18 at 128x64, few images (a smoke run)")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", default="256x128", help="model input HxW")
    ap.add_argument("--images", type=int, default=128, help="images embedded by `reid embed`")
    ap.add_argument("--loop-images", type=int, default=16, help="images of the plain loop (it is slow)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1, help="decoding processes of reid embed")
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--skip-embed", action="store_true", help="only the ONNX Runtime / PyTorch forward figures")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads of PyTorch and of ONNX Runtime (default: PyTorch's, i.e. OMP_NUM_THREADS)")
    args = ap.parse_args()
    if args.quick:
        args.arch, args.size, args.images, args.loop_images = "resnet18", "128x64", 64, 16
    size = tuple(int(v) for v in args.size.split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)

    from reid.inference.embed import EmbedConfig, run_embed
    from reid.models.aligned import ModelConfig, build_model
    from reid.models.checkpoint import save_checkpoint

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.arch} at {size[0]}x{size[1]}, random init")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_images(tmp / "crops", args.images)
        config = ModelConfig(num_classes=751, arch=args.arch)
        torch.manual_seed(0)
        model = build_model(config, pretrained=None).eval()
        checkpoint = save_checkpoint(tmp / "model.pt", model, config, "bench", extra={"input_size": list(size)})

        if not args.skip_embed:
            loop_rate = plain_loop(model, paths[: args.loop_images], size)
            start = time.perf_counter()
            report = run_embed(EmbedConfig(checkpoint=checkpoint, src=tmp / "crops", out=tmp / "features.h5",
                                           device="cpu", batch_size=args.batch_size, workers=args.workers))
            embed_rate = report.rows / (time.perf_counter() - start)
            print(f"embed: reid embed {embed_rate:.2f} images/s ({report.rows} images, batch {args.batch_size}, "
                  f"{args.workers} worker(s), whole call) | plain PIL+torchvision loop {loop_rate:.2f} images/s "
                  f"({args.loop_images} images) | ratio {embed_rate / loop_rate:.2f}x")

        if args.skip_onnx:
            return
        try:
            import onnxruntime as ort
        except ImportError:
            print("onnxruntime not installed: pip install -e '.[export]' to measure ONNX Runtime")
            return
        from reid.inference.export import ExportConfig, run_export

        run_export(ExportConfig(checkpoint=checkpoint, out=tmp / "model.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the same number of threads as PyTorch
        session = ort.InferenceSession(str(tmp / "model.onnx"), options, providers=["CPUExecutionProvider"])
        for batch, repeat in ((1, 5), (64, 2)):
            x = np.random.default_rng(0).normal(size=(batch, 3, *size)).astype(np.float32)

            def run_torch(a: np.ndarray) -> None:
                with torch.inference_mode():
                    model(torch.from_numpy(a))

            t_torch = time_forward(run_torch, x, repeat)
            t_ort = time_forward(lambda a: session.run(None, {"images": a}), x, repeat)
            print(f"forward batch {batch}: ONNX Runtime CPU {batch / t_ort:.2f} images/s | PyTorch CPU "
                  f"{batch / t_torch:.2f} images/s | ratio {t_torch / t_ort:.2f}x")


if __name__ == "__main__":
    main()
