"""Where the images to embed come from: a folder (walked recursively), a list file, one image,
or an occluded-reid HDF5 file; and how one of them becomes a uint8 RGB array at the model's size.

Every source is listed up front into an :class:`ImageList` (the order is part of the
contract: same input, same rows, same bytes); pixels are read one item at a time, in the
data-loader workers, by :func:`load_item`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common.decoding import decode_image, resize_to
from common.errors import BadInputError
from occsim.schema import SPLITS

logger = logging.getLogger(__name__)

#: File name endings OpenCV decodes (imread's documented formats), compared lower-case.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    ".bmp .dib .jpg .jpeg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm .pnm .pfm .sr .ras "
    ".tif .tiff .exr .hdr .pic".split()
)
LIST_SUFFIXES: frozenset[str] = frozenset({".txt", ".lst"})
H5_SUFFIXES: frozenset[str] = frozenset({".h5", ".hdf5"})

SourceKind = str  # "folder" | "list" | "image" | "h5"


@dataclass(frozen=True)
class ImageList:
    """The images of one source, in embedding order.

    Attributes:
        kind: "folder", "list", "image" or "h5".
        root: the source as given, resolved (folder, list file, image or HDF5 file).
        names: what the output records per image, shape [N]: the path relative to the folder
            (with "/" separators), the line of the list file, the file name, or "split/row".
        files: absolute file paths to decode ("folder", "list", "image"); empty for "h5".
        h5_rows: (split, row) per image for "h5"; empty otherwise.
        pids, camids: identities and cameras of an "h5" source, shape [N]; None otherwise.
    """

    kind: SourceKind
    root: Path
    names: tuple[str, ...]
    files: tuple[str, ...] = ()
    h5_rows: tuple[tuple[str, int], ...] = ()
    pids: np.ndarray | None = None
    camids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def digest(self) -> str:
        """SHA-256 of the kind and the names: a resume must continue the same listing."""
        digest = hashlib.sha256(self.kind.encode())
        for name in self.names:
            digest.update(b"\0" + name.encode())
        return digest.hexdigest()


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def list_images(src: str | Path, splits: Sequence[str] = SPLITS) -> ImageList:
    """List the images of ``src``: a folder (recursive, sorted, hidden entries and files without
    an image suffix left out), a ``.txt``/``.lst`` list (one path a line, relative to the list's
    folder; blank lines and ``#`` comments ignored), one image file, or an occluded-reid
    ``.h5`` file (the rows of ``splits``, in that order).

    Raises:
        BadInputError: a missing source, a list naming missing files, or no image at all.
    """
    src = Path(src)
    if not src.exists():
        raise BadInputError(f"{src}: no such file or folder; give a folder of images, a .txt list, an image or an .h5 file")
    root = src.resolve()
    if src.is_dir():
        listing = _walk(root)
    elif src.suffix.lower() in H5_SUFFIXES:
        listing = _h5_rows(root, splits)
    elif src.suffix.lower() in LIST_SUFFIXES:
        listing = _read_list(root)
    elif is_image_name(src.name):
        listing = ImageList(kind="image", root=root, names=(src.name,), files=(str(root),))
    else:
        raise BadInputError(
            f"{src}: not a folder, an image, a .txt list or an .h5 file; give one of those"
        )
    if not len(listing):
        raise BadInputError(f"{src}: no images found; give a folder holding .jpg/.png/... files")
    return listing


def _walk(root: Path) -> ImageList:
    names: list[str] = []
    ignored = 0
    for folder, dirs, files in os.walk(root):
        # Sorted in place so os.walk descends in a fixed order; hidden folders (our own
        # resume spool among them) are not part of the data.
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if not is_image_name(name):
                ignored += 1
                continue
            names.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
    if ignored:
        logger.info("%s: %d file(s) without an image suffix left out", root, ignored)
    names.sort()  # one order for the whole tree, as `find | sort` prints it
    return ImageList(kind="folder", root=root, names=tuple(names), files=tuple(str(root / n) for n in names))


def _read_list(path: Path) -> ImageList:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the list ({exc}); give a text file with one image path a line") from exc
    names = [line.strip() for line in lines]
    names = [n for n in names if n and not n.startswith("#")]
    files = [str((path.parent / n).resolve()) if not os.path.isabs(n) else n for n in names]
    for line_no, (name, file) in enumerate(zip(names, files), start=1):
        if not os.path.isfile(file):
            raise BadInputError(f"{path}: entry {line_no} '{name}' is not a file; fix the list (paths are relative to its folder)")
    return ImageList(kind="list", root=path, names=tuple(names), files=tuple(files))


def _h5_rows(path: Path, splits: Sequence[str]) -> ImageList:
    from occsim.store import read_store

    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise BadInputError(f"--split {','.join(unknown)}: unknown split; use {', '.join(SPLITS)}")
    store = read_store(path)
    rows = [(split, row) for split in splits for row in range(len(store.splits[split]))]
    pids = np.concatenate([store.splits[s].pid for s in splits]).astype(np.int32)
    camids = np.concatenate([store.splits[s].camid for s in splits]).astype(np.int16)
    return ImageList(
        kind="h5", root=path, names=tuple(f"{s}/{r}" for s, r in rows), h5_rows=tuple(rows), pids=pids, camids=camids
    )


def fit_to_input(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image array -> uint8 RGB [H, W, 3] at ``size`` = (H, W).

    Grayscale [h, w] or [h, w, 1] is repeated to three channels and an alpha channel dropped.
    Resizing follows :func:`common.decoding.decode_image` (area averaging when shrinking,
    bilinear when enlarging), so arrays and files give the same pixels.

    Raises:
        BadInputError: not uint8, or not [h, w], [h, w, 1], [h, w, 3] or [h, w, 4].
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise BadInputError(f"image array of dtype {image.dtype}: expected uint8 RGB [H, W, 3]; convert it first")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise BadInputError(f"image array of shape {image.shape}: expected uint8 RGB [H, W, 3]")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(resize_to(image, size))


def decode_file(path: str, size: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """(uint8 RGB [H, W, 3] at ``size``, "") or (None, reason) for an unusable file.

    The decoder of ``occsim generate`` (:func:`common.decoding.decode_image`), so a crop and
    the same crop inside a generated file are judged by the same rules.
    """
    return decode_image(path, size)
