"""What the per-image Fletcher32 checksums cost on the read paths.

Writes one file of N random 128x64 images with :class:`occsim.store.StoreWriter` (checksums)
and a copy of it without the filter (a file written before checksums existed), then times, in
the same run, each read path on both:

* one random row at a time (``dataset[row]``, what the training loader does);
* one item of the training dataset (read + the default training transform to 256x128);
* a whole-file pass: ``occsim info``'s :func:`occsim.store.verify_pixels` on the checked file
  against the same block reads of the unchecked copy.

Run:  .venv/bin/python benchmarks/bench_pixel_checksums.py [--rows 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from occsim.schema import NO_BOX, SPLITS
from occsim.store import SplitManifest, StoreWriter, VERIFY_BLOCK, verify_pixels

SIZE = (128, 64)


def _manifest(n: int, train: bool) -> SplitManifest:
    pid = np.arange(n, dtype=np.int32) // 4 + 1
    return SplitManifest(pid=pid, camid=np.ones(n), occluded=np.zeros(n, bool), occ_type=np.zeros(n),
                         box=np.tile(NO_BOX, (n, 1)), clean_index=np.arange(n), path=[f"{i}.jpg" for i in range(n)],
                         label=pid - 1 if train else None)


def write_files(folder: Path, rows: int) -> tuple[Path, Path]:
    """(file with checksums, the same file without them)."""
    checked, plain = folder / "checked.h5", folder / "plain.h5"
    images = np.random.default_rng(0).integers(0, 256, (rows, *SIZE, 3), dtype=np.uint8)
    with StoreWriter(checked, SIZE) as writer:
        for split in SPLITS:
            n = rows if split == "train" else 4
            writer.add_split(split, _manifest(n, split == "train"))
            writer.write_images(split, 0, images[:n])
        writer.finish(source="bench", seed=0, generator_args={})
    with h5py.File(checked, "r") as old, h5py.File(plain, "w") as new:
        new.attrs.update(dict(old.attrs))
        for split in SPLITS:
            group = new.create_group(split)
            for name, dataset in old[split].items():
                group.create_dataset(name, data=dataset[()], dtype=dataset.dtype,
                                     chunks=dataset.chunks if name == "images" else None)
                group[name].attrs.update(dict(dataset.attrs))
    return checked, plain


def per_row(path: Path, order: np.ndarray) -> float:
    """Microseconds per random single-row read."""
    with h5py.File(path, "r") as h5:
        dataset = h5["train"]["images"]
        start = time.perf_counter()
        for row in order:
            dataset[int(row)]
        return (time.perf_counter() - start) / len(order) * 1e6


def per_item(path: Path, order: np.ndarray) -> float:
    """Microseconds per training item (read + default TrainTransform to 256x128)."""
    from reid.data import HDF5Split, TrainTransform, TransformConfig

    dataset = HDF5Split(path, "train", transform=TrainTransform(TransformConfig()))
    start = time.perf_counter()
    for row in order:
        dataset[int(row)]
    seconds = time.perf_counter() - start
    dataset.close()
    return seconds / len(order) * 1e6


def whole_file(path: Path, checked: bool) -> float:
    """Seconds to read every image (verify_pixels on a checked file, the same blocks otherwise)."""
    start = time.perf_counter()
    if checked:
        verify_pixels(path, progress=False)
    else:
        with h5py.File(path, "r") as h5:
            for split in SPLITS:
                dataset = h5[split]["images"]
                for a in range(0, dataset.shape[0], VERIFY_BLOCK):
                    dataset[a : a + VERIFY_BLOCK]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checked, plain = write_files(Path(tmp), args.rows)
        order = np.random.default_rng(1).permutation(args.rows)
        results: dict[str, list[tuple[float, float]]] = {"row": [], "item": [], "file": []}
        for _ in range(args.repeat):  # interleaved, so that load from other jobs hits both alike
            results["row"].append((per_row(checked, order), per_row(plain, order)))
            results["item"].append((per_item(checked, order[:1000]), per_item(plain, order[:1000])))
            results["file"].append((whole_file(checked, True), whole_file(plain, False)))
    rows = [
        ("random single-row read (us/row)", "row"),
        ("training item: read + TrainTransform (us/item)", "item"),
        (f"whole file, {args.rows + 8} images (s)", "file"),
    ]
    print(f"{'read path':<48}{'checksums':>12}{'none':>12}{'ratio':>8}")
    for label, key in rows:
        ours = statistics.median(a for a, _ in results[key])
        base = statistics.median(b for _, b in results[key])
        print(f"{label:<48}{ours:>12.2f}{base:>12.2f}{ours / base:>7.2f}x")


if __name__ == "__main__":
    main()
