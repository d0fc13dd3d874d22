"""Reading stored pixels back, each image checked against its checksums.

Two checksums guard every image of a split (schema in :mod:`occsim.schema`):

* HDF5's Fletcher32 filter, one per chunk (= per image), checked by HDF5 itself on every read;
  a failure is an ``OSError``. Fletcher-32 sums 16-bit words modulo 65535, so it cannot tell a
  0x0000 word from 0xFFFF: a black patch whose bytes were flipped to 0xFF passes it.
* A CRC-32 (``zlib.crc32``) of each image's bytes in the split's :data:`PIXEL_CRC` dataset,
  which sees every flipped byte. Checked here, on every read (microseconds per image).

Files written before the CRC-32 existed have only Fletcher32 (or, older still, nothing); they
still read, and ``occsim info`` says what it could check.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from common.errors import BadInputError
from occsim.schema import PIXEL_CRC, SPLITS

VERIFY_BLOCK = 512  # rows read at once by verify_pixels (one HDF5 call, each chunk still checked)

#: What a file's checksums can see (:func:`checksum_kind`).
CRC32, FLETCHER32, NO_CHECKSUM = "crc32", "fletcher32", "none"


def image_crc32(images: np.ndarray) -> np.ndarray:
    """CRC-32 of each image's bytes (C order): uint8 [n, H, W, 3] -> uint32 [n]."""
    return np.fromiter((zlib.crc32(np.ascontiguousarray(image)) for image in images), dtype=np.uint32,
                       count=len(images))


def pixel_read_error(path: str | os.PathLike, split: str, row: int, exc: BaseException | str) -> BadInputError:
    """The one-line error for pixels that fail a checksum (or cannot be read back): ``exc`` is
    h5py's OSError (Fletcher32: HDF5 refuses an image whose bytes changed after it was written)
    or the name of the failed check."""
    what = exc if isinstance(exc, str) else _short(exc)
    return BadInputError(f"{path}: the pixels of {split} row {row} cannot be read ({what}: damaged or "
                         f"modified file); regenerate it with `occsim generate` (`occsim info` checks every row)")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return "checksum mismatch" if "filter returned failure" in text else text or type(exc).__name__


CRC_MISMATCH = "checksum mismatch, CRC-32"


class CheckedImages:
    """One split's images, each read checked against its CRC-32 (and, by HDF5, its Fletcher32).

    Build one per open file and split and keep it: the dataset handles are looked up once
    (an HDF5 name lookup costs more than reading a 24 KB image).

    Args:
        h5: an open occluded-reid file (:func:`occsim.store.open_h5`).
        split: "train", "query" or "gallery".
        path: the file's name in error messages (default: ``h5.filename``).
    """

    def __init__(self, h5: h5py.File, split: str, path: str | os.PathLike | None = None) -> None:
        group = h5[split]
        self.path = Path(path if path is not None else h5.filename)
        self.split = split
        self.images = group["images"]
        self.crc = group.get(PIXEL_CRC)  # None: a file written before the CRC-32s

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def read(self, row: int) -> np.ndarray:
        """One image, uint8 [H, W, 3] RGB.

        Raises:
            BadInputError: naming the file, split and row, when a checksum fails.
        """
        row = int(row)
        try:
            image = self.images[row]
        except OSError as exc:
            raise pixel_read_error(self.path, self.split, row, exc) from exc
        if self.crc is not None and zlib.crc32(image) != int(self.crc[row]):
            raise pixel_read_error(self.path, self.split, row, CRC_MISMATCH)
        return image

    def read_rows(self, rows: Iterable[int]) -> np.ndarray:
        """Images of ``rows`` (any order), uint8 [n, H, W, 3], each checked as :meth:`read`."""
        rows = [int(r) for r in rows]
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows):
            out[i] = self.read(row)
        return out

    def verify(self, start: int, stop: int) -> None:
        """Check rows ``start:stop`` in one HDF5 read (a block of :func:`verify_pixels`).

        Raises:
            BadInputError: naming the first row of the block that fails a checksum.
        """
        try:
            block = self.images[start:stop]
        except OSError as exc:  # name the first damaged row of the block
            self.read_rows(range(start, stop))
            raise pixel_read_error(self.path, self.split, start, exc) from exc
        if self.crc is None:
            return
        bad = np.flatnonzero(image_crc32(block) != self.crc[start:stop])
        if bad.size:
            raise pixel_read_error(self.path, self.split, start + int(bad[0]), CRC_MISMATCH)


def checksum_kind(h5: h5py.File) -> str:
    """:data:`CRC32` when every non-empty split has per-image CRC-32s, else :data:`FLETCHER32`
    when every one has HDF5's Fletcher32, else :data:`NO_CHECKSUM`."""
    groups = [h5[s] for s in SPLITS if s in h5 and h5[s]["images"].shape[0]]
    if all(PIXEL_CRC in g for g in groups):
        return CRC32
    return FLETCHER32 if all(g["images"].fletcher32 for g in groups) else NO_CHECKSUM


def check_crc_dataset(h5: h5py.File, split: str) -> str | None:
    """What is wrong with ``split``'s :data:`PIXEL_CRC` dataset (None: absent, or one uint32
    per image)."""
    group = h5[split]
    if PIXEL_CRC not in group:
        return None
    crc, n = group[PIXEL_CRC], group["images"].shape[0]
    if crc.shape != (n,) or crc.dtype != np.uint32:
        return f"dataset '{split}/{PIXEL_CRC}' has shape {crc.shape} and dtype {crc.dtype}, expected ({n},) uint32"
    return None


def verify_file(h5: h5py.File, path: str | os.PathLike, progress: bool = True) -> int | None:
    """Read every image of an open file and check its checksums (:meth:`CheckedImages.verify`).

    Returns:
        The number of images checked, or None for a file written without checksums.

    Raises:
        BadInputError: naming the first split and row whose pixels fail a checksum.
    """
    from tqdm import tqdm

    if checksum_kind(h5) == NO_CHECKSUM:
        return None
    splits = [CheckedImages(h5, s, path) for s in SPLITS if s in h5 and h5[s]["images"].shape[0]]
    total = sum(len(s) for s in splits)
    with tqdm(total=total, unit="img", desc="verify pixels", disable=None if progress else True, leave=False) as bar:
        for images in splits:
            for start in range(0, len(images), VERIFY_BLOCK):
                stop = min(len(images), start + VERIFY_BLOCK)
                images.verify(start, stop)
                bar.update(stop - start)
    return total
