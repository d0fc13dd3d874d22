"""Input pipeline: images/s from the HDF5 dataset vs a folder of JPEGs read with PIL.

Same images (128x64 stored), same transforms: resize to 256x128 (bilinear), random horizontal
flip, pad 10 + random crop back to 256x128, ImageNet normalisation; DataLoader with the same
number of workers and batch size, shuffled, persistent workers, in the same run.

* baseline: one JPEG per image, ``PIL.Image.open(path).convert("RGB")`` per item and the
  torchvision transforms Resize / RandomHorizontalFlip / Pad / RandomCrop / ToTensor /
  Normalize (how torchreid and the AlignedReID reproduction load data), default collate:
  float32 normalised batches reach the main process.
* hdf5, uint8 out: :class:`reid.data.HDF5Split` (per-row HDF5 reads, cv2/numpy on uint8 in
  the workers) + ``CollateItems(normalize=False)`` — what ``build_train_loader`` delivers by
  default; the trainer's ``batch.to(device)`` normalises on the GPU, which is not counted here.
* hdf5, + normalise in main: the same plus ``batch.to("cpu")`` (normalisation on the CPU in
  the main process, counted) — the CPU-training path.
* hdf5, normalised in workers: ``CollateItems(normalize=True)``, float32 batches like the baseline.
* hdf5 joint loader: ``build_train_loader(..., "both")`` with P=16, K=2 pairs (64 images: 32
  clean + their 32 occluded copies), the PK sampler and per-item keyed seeds, uint8 out.

Each pipeline runs ``--rounds`` times, alternating, over ``--passes`` passes of the data after a
warm-up batch (worker start-up excluded); the median is reported, as images/s (wall clock,
depends on the machine's other load) and CPU ms per image (main process + workers, from
/proc; does not depend on other load).

    .venv/bin/python benchmarks/bench_input_pipeline.py --images 3000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import torch
import torch.utils.data
from PIL import Image
from torchvision import transforms as T

from occsim.schema import NO_BOX
from occsim.store import SplitManifest, StoreWriter
from reid.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CollateItems,
    HDF5Split,
    TrainTransform,
    TransformConfig,
    build_train_loader,
)
from reid.data.loaders import _worker_init

IMAGE_SIZE = (128, 64)
BASELINE = "jpeg+PIL+torchvision (baseline)"


def synth_images(n: int, per_id: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Person-sized test images with JPEG-realistic content: smooth colour fields + mild noise.

    Returns:
        images uint8 [n, 128, 64, 3] RGB, pids int [n].
    """
    rng = np.random.default_rng(seed)
    h, w = IMAGE_SIZE
    images = np.empty((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        coarse = rng.integers(0, 256, size=(8, 4, 3)).astype(np.uint8)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        images[i] = np.clip(smooth + rng.integers(-12, 13, size=(h, w, 3)), 0, 255)
    return images, np.arange(n) // per_id


def write_data(folder: Path, images: np.ndarray, pids: np.ndarray) -> tuple[Path, list[Path]]:
    """The same pixels as an occluded-reid HDF5 file (train = clean + one occluded copy each)
    and as a folder of JPEGs (clean only, Market-style names)."""
    n = len(images)
    paths = []
    jpeg_dir = folder / "jpeg"
    jpeg_dir.mkdir()
    for i, (image, pid) in enumerate(zip(images, pids)):
        path = jpeg_dir / f"{pid:04d}_c1s1_{i:06d}_00.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    occluded = images.copy()
    occluded[:, 40:90, 7:57] = occluded.reshape(n, -1, 3).mean(axis=1).astype(np.uint8)[:, None, None, :]
    names = [p.name for p in paths]
    train = SplitManifest(
        pid=np.concatenate([pids, pids]) + 1,
        camid=np.ones(2 * n),
        occluded=np.r_[np.zeros(n, bool), np.ones(n, bool)],
        occ_type=np.r_[np.zeros(n), np.ones(n)],
        box=np.r_[np.tile(NO_BOX, (n, 1)), np.tile((7, 40, 50, 50), (n, 1))],
        clean_index=np.r_[np.arange(n), np.arange(n)],
        path=names + names,
        label=np.concatenate([pids, pids]),
    )
    small = SplitManifest(pid=[1, 2], camid=[1, 2], occluded=[False, False], occ_type=[0, 0], box=[NO_BOX] * 2,
                          clean_index=[0, 1], path=["a.jpg", "b.jpg"])
    h5_path = folder / "bench.h5"
    with StoreWriter(h5_path, image_size=IMAGE_SIZE) as writer:
        writer.add_split("train", train)
        for start in range(0, n, 512):
            writer.write_images("train", start, images[start : start + 512])
            writer.write_images("train", n + start, occluded[start : start + 512])
        for split in ("query", "gallery"):
            writer.add_split(split, small)
            writer.write_images(split, 0, images[:2])
        writer.finish(source="bench", seed=0, generator_args={})
    return h5_path, paths


class JpegFolder(torch.utils.data.Dataset):
    """The torchreid-style baseline: PIL decode per item, torchvision transforms."""

    def __init__(self, paths: list[Path], transform: Callable) -> None:
        self.paths = paths
        self.pids = [int(p.name[:4]) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.open(self.paths[index]).convert("RGB")
        return self.transform(image), self.pids[index]


def torchvision_transform(config: TransformConfig) -> Callable:
    return T.Compose([
        T.Resize(config.size, interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(p=0.5),
        T.Pad(config.pad),
        T.RandomCrop(config.size),
        T.ToTensor(),
        T.Normalize(mean=config.mean, std=config.std),
    ])


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of these processes so far (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def measure(loader: torch.utils.data.DataLoader, to_float: Callable, passes: int) -> tuple[float, float]:
    """(images/s, CPU ms per image over the main process and the workers) over ``passes``
    epochs, after one warm-up batch (worker start-up excluded).

    CPU time per image does not depend on what else runs on the machine; images/s does.
    """
    next(iter(loader))
    workers = getattr(getattr(loader, "_iterator", None), "_workers", [])  # persistent workers
    pids = [os.getpid(), *(w.pid for w in workers)]
    count = 0
    cpu0 = cpu_seconds(pids)
    start = time.perf_counter()
    for epoch in range(passes):
        if hasattr(loader.batch_sampler, "set_epoch"):
            loader.batch_sampler.set_epoch(epoch + 1)
        for batch in loader:
            images = to_float(batch)
            assert images.shape[1:] == (3, 256, 128)
            count += images.shape[0]
    wall = time.perf_counter() - start
    return count / wall, 1000 * (cpu_seconds(pids) - cpu0) / count


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--per-id", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--main-threads", type=int, default=1,
                        help="torch threads of the main process (it only normalises here; more threads "
                             "spin-wait against the workers on a small machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.main_threads)
    torch.manual_seed(0)
    config = TransformConfig(size=(256, 128), pad=10)
    with tempfile.TemporaryDirectory() as tmp:
        images, pids = synth_images(args.images, args.per_id, seed=0)
        h5_path, paths = write_data(Path(tmp), images, pids)
        jpeg_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        common = dict(batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True,
                      persistent_workers=args.workers > 0, worker_init_fn=_worker_init if args.workers else None)
        baseline = torch.utils.data.DataLoader(JpegFolder(paths, torchvision_transform(config)), **common)
        dataset = HDF5Split(h5_path, "train", rows=np.arange(args.images), transform=TrainTransform(config))
        ours_float = torch.utils.data.DataLoader(dataset, collate_fn=CollateItems(IMAGENET_MEAN, IMAGENET_STD), **common)
        ours_uint8 = torch.utils.data.DataLoader(
            dataset, collate_fn=CollateItems(IMAGENET_MEAN, IMAGENET_STD, normalize=False), **common)
        joint = build_train_loader(h5_path, "both", batch_p=args.batch // 4, batch_k=2, transform_config=config,
                                   workers=args.workers, seed=0)
        pipelines = {
            BASELINE: (baseline, lambda b: b[0]),
            "hdf5, uint8 out (normalise on GPU)": (ours_uint8, lambda b: b.images),
            "hdf5, + normalise in main (CPU)": (ours_uint8, lambda b: b.to("cpu").images),
            "hdf5, normalised in workers": (ours_float, lambda b: b.images),
            "hdf5 joint loader both PxK, uint8": (joint, lambda b: b.images),
        }
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        costs: dict[str, list[float]] = {name: [] for name in pipelines}
        for _ in range(args.rounds):
            for name, (loader, to_float) in pipelines.items():
                # The joint loader's epoch holds only the identities' P x K pairs: more passes.
                passes = args.passes * max(1, args.images // (len(loader) * args.batch))
                rate, cost = measure(loader, to_float, passes)
                rates[name].append(rate)
                costs[name].append(cost)
    print(f"{args.images} images 128x64 -> 256x128, batch {args.batch}, workers {args.workers}, "
          f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, JPEG {jpeg_kb:.1f} KiB/image, {args.rounds} rounds (median)")
    base_rate = statistics.median(rates[BASELINE])
    base_cost = statistics.median(costs[BASELINE])
    print(f"{'pipeline':36s} {'images/s':>9s} {'ratio':>6s} {'CPU ms/image':>13s} {'ratio':>6s}   images/s per round")
    for name in pipelines:
        rate, cost = statistics.median(rates[name]), statistics.median(costs[name])
        spread = ", ".join(f"{v:.0f}" for v in rates[name])
        print(f"{name:36s} {rate:9.0f} {rate / base_rate:5.2f}x {cost:13.3f} {base_cost / cost:5.2f}x   ({spread})")


if __name__ == "__main__":
    main()
