"""Benchmark of `reid embed` (each --backend) against a plain loop, and of ONNX Runtime against PyTorch.

Same run, same model (random init; speed does not depend on the weights), same images, for
each thread count of --threads (PyTorch's threads, which `reid embed --backend onnxruntime`
gives ONNX Runtime too):

* embed: images/s of :func:`reid.inference.embed.run_embed` with ``--backend torch`` and with
  ``--backend onnxruntime`` (listing, model load, the ONNX export and its parity check,
  decoding, batching, forward, the features file written: the whole call timed; and the
  embedding loop alone, the rate `reid embed` prints) beside a plain loop that a person would
  write first: PIL open, torchvision Resize + ToTensor + Normalize, model forward, one image
  at a time (issue 10's target: >= 5x on 2 CPU cores; issue 18's: >= 5x at 2 threads and
  >= 1.5x at 1 thread, resnet50 256x128). The three are interleaved, --rounds times, and the
  median of each is printed with its ratio to the loop;
* forward: ONNX Runtime (CPU) on the file `reid export` writes beside PyTorch eager on the
  CPU, batch 1 and batch 64, on the same input.

Images: the first --images crops of data/CUHK01/campus when present (real 160x60 PNGs),
else synthetic JPEGs. The machine's cores are shared with other sessions: keep runs short
and read the ratios (each pair is measured back to back), not the absolute rates.

Run:  .venv/bin/python benchmarks/bench_embed.py [--quick] [--arch resnet50] [--images 128] [--threads 2,1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
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


def time_embed(checkpoint: Path, crops: Path, out: Path, backend: str, batch_size: int, workers: int) -> tuple[float, float]:
    """(images/s of the whole ``run_embed`` call, images/s of its embedding loop) with ``backend``."""
    from reid.inference.embed import EmbedConfig, run_embed

    start = time.perf_counter()
    report = run_embed(EmbedConfig(checkpoint=checkpoint, src=crops, out=out, device="cpu", batch_size=batch_size,
                                   workers=workers, backend=backend, force=True))
    return report.rows / (time.perf_counter() - start), report.images_per_second


def bench_embed(args: argparse.Namespace, model: torch.nn.Module, checkpoint: Path, tmp: Path, paths: list[Path],
                size: tuple[int, int], backends: list[str]) -> None:
    """Interleave the plain loop and `reid embed` with each backend, ``args.rounds`` times; print medians and ratios."""
    loop: list[float] = []
    whole: dict[str, list[float]] = {b: [] for b in backends}
    inner: dict[str, list[float]] = {b: [] for b in backends}
    for _ in range(args.rounds):
        loop.append(plain_loop(model, paths[: args.loop_images], size))
        for backend in backends:
            rate, loop_rate = time_embed(checkpoint, tmp / "crops", tmp / f"features-{backend}.h5", backend,
                                         args.batch_size, args.workers)
            whole[backend].append(rate)
            inner[backend].append(loop_rate)
    base = statistics.median(loop)
    threads = torch.get_num_threads()
    print(f"embed, {threads} thread(s): plain PIL+torchvision loop {base:.2f} images/s ({args.loop_images} images; "
          f"rounds {', '.join(f'{v:.2f}' for v in loop)})")
    for backend in backends:
        w, i = statistics.median(whole[backend]), statistics.median(inner[backend])
        print(f"embed, {threads} thread(s): reid embed --backend {backend}: whole call {w:.2f} images/s "
              f"(ratio {w / base:.2f}x), embedding loop {i:.2f} images/s (ratio {i / base:.2f}x) "
              f"({len(paths)} images, batch {args.batch_size}, {args.workers} worker(s); "
              f"whole-call rounds {', '.join(f'{v:.2f}' for v in whole[backend])})")
    if len(backends) == 2:
        t, o = (statistics.median(whole[b]) for b in backends)
        print(f"embed, {threads} thread(s): {backends[1]} / {backends[0]} whole call {o / t:.2f}x, embedding loop "
              f"{statistics.median(inner[backends[1]]) / statistics.median(inner[backends[0]]):.2f}x")


def bench_forward(model: torch.nn.Module, checkpoint: Path, tmp: Path, size: tuple[int, int]) -> None:
    """ONNX Runtime on the `reid export` file beside PyTorch eager, batch 1 and 64, same threads."""
    import onnxruntime as ort

    from reid.inference.export import ExportConfig, run_export

    if not (tmp / "model.onnx").exists():
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
        print(f"forward batch {batch}, {torch.get_num_threads()} thread(s): ONNX Runtime CPU {batch / t_ort:.2f} "
              f"images/s | PyTorch CPU {batch / t_torch:.2f} images/s | ratio {t_torch / t_ort:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="resnet18 at 128x64, 256 images, 32 in the loop, 2 rounds, threads 2,1 (a short run)")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", default="256x128", help="model input HxW")
    ap.add_argument("--images", type=int, default=128, help="images embedded by `reid embed`")
    ap.add_argument("--loop-images", type=int, default=16, help="images of the plain loop (it is slow)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1, help="decoding processes of reid embed")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of loop / embed per backend")
    ap.add_argument("--backends", default="torch,onnxruntime", help="reid embed --backend values to time")
    ap.add_argument("--skip-onnx", action="store_true", help="no ONNX Runtime at all (--backends torch, no forward)")
    ap.add_argument("--skip-embed", action="store_true", help="only the ONNX Runtime / PyTorch forward figures")
    ap.add_argument("--threads", default=None,
                    help="thread counts to measure in turn, e.g. 2,1 (PyTorch's, and ONNX Runtime's through reid "
                         "embed); default: PyTorch's, i.e. OMP_NUM_THREADS")
    args = ap.parse_args()
    if args.quick:
        args.arch, args.size, args.images, args.loop_images, args.rounds = "resnet18", "128x64", 256, 32, 2
        args.threads = args.threads or "2,1"
    size = tuple(int(v) for v in args.size.split("x"))
    thread_counts = [int(v) for v in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    backends = [b for b in args.backends.split(",") if b and not (args.skip_onnx and b == "onnxruntime")]
    if not args.skip_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime not installed: pip install -e '.[export]' to measure ONNX Runtime")
            args.skip_onnx, backends = True, [b for b in backends if b != "onnxruntime"]

    from reid.models.aligned import ModelConfig, build_model
    from reid.models.checkpoint import save_checkpoint

    print(f"torch {torch.__version__}; {args.arch} at {size[0]}x{size[1]}, random init; threads {thread_counts}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = make_images(tmp / "crops", args.images)
        config = ModelConfig(num_classes=751, arch=args.arch)
        torch.manual_seed(0)
        model = build_model(config, pretrained=None).eval()
        checkpoint = save_checkpoint(tmp / "model.pt", model, config, "bench", extra={"input_size": list(size)})
        for threads in thread_counts:
            torch.set_num_threads(threads)
            if not args.skip_embed:
                bench_embed(args, model, checkpoint, tmp, paths, size, backends)
            if not args.skip_onnx:
                bench_forward(model, checkpoint, tmp, size)
        shutil.rmtree(tmp / "crops", ignore_errors=True)


if __name__ == "__main__":
    main()
