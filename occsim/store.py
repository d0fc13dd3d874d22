"""Write and read the occluded-reid HDF5 file (schema in :mod:`occsim.schema`).

The writer streams images into a temporary file next to the target and renames it only
when every split and the root attributes are complete, so an interrupted run never leaves a
file that looks valid. The reader validates the schema and loads the per-image manifests
(everything but the pixels) into memory; pixels are read row by row on demand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from occsim import __version__
from common.atomic import AtomicTarget, check_output, sweep_leftovers
from common.errors import BadInputError
from occsim.pixels import (  # noqa: F401 (pixel_read_error, VERIFY_BLOCK: re-exported for the readers)
    CRC32,
    NO_CHECKSUM,
    VERIFY_BLOCK,
    CheckedImages,
    check_crc_dataset,
    checksum_kind,
    image_crc32,
    pixel_read_error,
    verify_file,
)
from occsim.schema import (
    FORMAT,
    FORMAT_VERSION,
    COLUMNS,
    MANIFEST_COLUMNS,
    NO_SOURCE,
    OCC_TYPE_NAMES,
    PIXEL_CRC,
    ROOT_ATTRS,
    SPLITS,
    columns_for,
    image_dataset_options,
    occ_type_code,
    row_shape,
)

logger = logging.getLogger(__name__)


@dataclass
class SplitManifest:
    """Per-row metadata of one split (every column but the pixels).

    Attributes:
        pid: identity as in the source, shape [N] int32 (-1 junk, 0 distractor).
        camid: camera, shape [N] int16.
        occluded: True for a simulated occlusion, shape [N] bool.
        occ_type: occluder code (:class:`occsim.schema.OccType`), shape [N] uint8.
        box: x, y, w, h of the patch in stored pixels or -1s, shape [N, 4] int16.
        clean_index: row of the clean original in the same split, shape [N] int32.
        path: source file relative to the source root, N strings.
        label: train only, contiguous class index 0..P-1, shape [N] int32; None elsewhere.
        occ_source: row (same split) of the clean image a ``pedestrian`` row's box shows, -1
            for the other rows, shape [N] int32; None (a file written before it) means all -1.
    """

    pid: np.ndarray
    camid: np.ndarray
    occluded: np.ndarray
    occ_type: np.ndarray
    box: np.ndarray
    clean_index: np.ndarray
    path: list[str]
    label: np.ndarray | None = None
    occ_source: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pid = np.asarray(self.pid, dtype=np.int32)
        self.camid = np.asarray(self.camid, dtype=np.int16)
        self.occluded = np.asarray(self.occluded, dtype=np.bool_)
        self.occ_type = np.asarray(self.occ_type, dtype=np.uint8)
        self.box = np.asarray(self.box, dtype=np.int16).reshape(-1, 4)
        self.clean_index = np.asarray(self.clean_index, dtype=np.int32)
        self.path = [str(p) for p in self.path]
        if self.label is not None:
            self.label = np.asarray(self.label, dtype=np.int32)
        n = len(self.pid)
        self.occ_source = (np.full(n, NO_SOURCE, dtype=np.int32) if self.occ_source is None
                           else np.asarray(self.occ_source, dtype=np.int32))
        lengths = {name: len(self.column(name)) for name in MANIFEST_COLUMNS if self.column(name) is not None}
        if any(length != n for length in lengths.values()):
            raise ValueError(f"manifest columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(self.pid)

    def column(self, name: str) -> Any:
        return getattr(self, name)

    def rows(self, selection: str) -> np.ndarray:
        """Row indices for a selection: "all", "clean", "occluded" or "occluded:<type>".

        Returns:
            sorted int64 row indices, shape [n].
        """
        if selection == "all":
            mask = np.ones(len(self), dtype=bool)
        elif selection == "clean":
            mask = ~self.occluded
        elif selection == "occluded":
            mask = self.occluded
        elif selection.startswith("occluded:"):
            mask = self.occ_type == occ_type_code(selection.split(":", 1)[1])
        else:
            raise ValueError(f"unknown row selection {selection!r}; use all, clean, occluded or occluded:<type>")
        return np.flatnonzero(mask)

    def occ_types_present(self) -> list[str]:
        """Names of the occluder types that have rows in this split, in code order."""
        return [OCC_TYPE_NAMES[c] for c in sorted(set(self.occ_type.tolist())) if c != 0]


def compute_fingerprint(manifests: dict[str, SplitManifest], generator_args: dict[str, Any]) -> str:
    """sha256 of the manifests (all splits, all columns but pixels) and the generator arguments.

    Checkpoints and reports record it, so that a model can say which frozen splits it saw. An
    optional column (:attr:`occsim.schema.ColumnSpec.missing`) counts only when some row differs
    from its ``missing`` value: files written before it existed keep their fingerprints.
    """
    missing = {c.name: c.missing for c in COLUMNS if c.missing is not None}
    digest = hashlib.sha256()
    digest.update(json.dumps(generator_args, sort_keys=True).encode())
    for split in SPLITS:
        if split not in manifests:
            continue
        digest.update(split.encode())
        manifest = manifests[split]
        for name in MANIFEST_COLUMNS:
            value = manifest.column(name)
            if value is None or (name in missing and bool(np.all(value == missing[name]))):
                continue
            digest.update(name.encode())
            if name == "path":
                digest.update("\n".join(value).encode())
            else:
                digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


class StoreWriter:
    """Streams splits into ``path`` atomically.

    Usage::

        with StoreWriter(path, image_size=(128, 64), force=False) as writer:
            writer.add_split("train", manifest)
            writer.write_images("train", start, images)   # images shape [n, H, W, 3] uint8
            ...
            fingerprint = writer.finish(source="market1501", seed=0, generator_args={...})

    Leaving the block without ``finish`` (an exception, Ctrl-C) deletes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, image_size: tuple[int, int], force: bool = False) -> None:
        self.path = Path(path)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.force = force
        self._target: AtomicTarget | None = None
        self._file: h5py.File | None = None
        self._manifests: dict[str, SplitManifest] = {}
        self._written: dict[str, np.ndarray] = {}

    def __enter__(self) -> "StoreWriter":
        check_output(self.path, force=self.force, what="HDF5 file")
        # A run killed with SIGKILL leaves its temporary file; the next one writing here removes
        # it (AtomicTarget's names; ".NAME.partial-PID" is what earlier versions left).
        sweep_leftovers(self.path.parent, re.compile(re.escape(f".{self.path.name}.partial-") + r"(\d+)"))
        try:
            self._target = AtomicTarget(self.path, overwrite=self.force)  # no-clobber without force
            self._file = h5py.File(self._target.tmp, "w")
        except OSError as exc:
            self._discard()
            raise BadInputError(f"{self.path.parent}: cannot write there ({exc.strerror or exc}); choose another --out") from exc
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._discard()

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._target is not None:
            self._target.discard()  # nothing left to remove after finish()

    @property
    def tmp_path(self) -> Path | None:
        """The file being written (renamed onto ``path`` by :meth:`finish`)."""
        return None if self._target is None else self._target.tmp

    def add_split(self, split: str, manifest: SplitManifest) -> None:
        """Create the split group and write its manifest; pixels follow via :meth:`write_images`."""
        assert self._file is not None, "use StoreWriter as a context manager"
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        if (manifest.label is None) == (split == "train"):
            raise ValueError("the train split needs labels, the others must not have them")
        group = self._file.create_group(split)
        n = len(manifest)
        for column in columns_for(split):
            shape = (n, *row_shape(column, self.image_size))
            if column.name == "images":
                group.create_dataset("images", shape=shape, dtype=np.uint8, **image_dataset_options(n, self.image_size))
            else:
                group.create_dataset(column.name, data=np.asarray(manifest.column(column.name), dtype=column.dtype),
                                     shape=shape, dtype=column.dtype)
        group["occ_type"].attrs["names"] = json.dumps(list(OCC_TYPE_NAMES))
        group.create_dataset(PIXEL_CRC, shape=(n,), dtype=np.uint32)
        self._manifests[split] = manifest
        self._written[split] = np.zeros(n, dtype=bool)

    def write_images(self, split: str, start: int, images: np.ndarray) -> None:
        """Write rows ``start .. start+len(images)`` of ``split``; images shape [n, H, W, 3] uint8 RGB."""
        assert self._file is not None
        expected = (*self.image_size, 3)
        if images.dtype != np.uint8 or images.shape[1:] != expected:
            raise ValueError(f"images must be uint8 of shape [n, {expected}], got {images.dtype} {images.shape}")
        self._file[split]["images"][start : start + len(images)] = images
        self._file[split][PIXEL_CRC][start : start + len(images)] = image_crc32(images)
        self._written[split][start : start + len(images)] = True

    def finish(self, source: str, seed: int, generator_args: dict[str, Any]) -> str:
        """Write the root attributes, close and rename into place. Returns the fingerprint.

        Raises:
            BadInputError: (without ``force``) a file appeared at ``path`` meanwhile, e.g. written
                by another run with the same ``--out``: this one is discarded, that one kept.
        """
        assert self._file is not None
        missing = [s for s in SPLITS if s not in self._manifests]
        unwritten = [s for s, done in self._written.items() if not done.all()]
        if missing or unwritten:
            raise RuntimeError(f"incomplete store: missing splits {missing}, unwritten images in {unwritten}")
        fingerprint = compute_fingerprint(self._manifests, generator_args)
        attrs = self._file.attrs
        attrs["format"] = FORMAT
        attrs["format_version"] = FORMAT_VERSION
        attrs["source"] = source
        attrs["seed"] = int(seed)
        attrs["generator_args"] = json.dumps(generator_args, sort_keys=True)
        attrs["package_version"] = __version__
        attrs["image_size"] = np.asarray(self.image_size, dtype=np.int32)
        attrs["fingerprint"] = fingerprint
        self._file.close()
        self._file = None
        assert self._target is not None
        self._target.commit()
        logger.info("wrote %s (fingerprint %s)", self.path, fingerprint[:12])
        return fingerprint


@dataclass(frozen=True)
class StoreInfo:
    """What :func:`read_store` returns: root attributes plus the manifest of every split."""

    path: Path
    format_version: int
    source: str
    seed: int
    generator_args: dict[str, Any]
    package_version: str
    image_size: tuple[int, int]
    fingerprint: str
    splits: dict[str, SplitManifest] = field(repr=False)
    pixel_checksums: bool = False  # every non-empty split's images carry a per-image checksum
    pixel_crc: bool = False  # ... and that checksum is a CRC-32 (else HDF5's Fletcher32 only)


    def split(self, name: str) -> SplitManifest:
        return self.splits[name]


def _fail(path: Path, what: str) -> BadInputError:
    return BadInputError(f"{path}: {what}; regenerate it with `occsim generate`")


def open_h5(path: str | os.PathLike) -> h5py.File:
    """Open an HDF5 file read-only, turning a missing or damaged file into :class:`BadInputError`."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file; create it with `occsim generate --out {path}`")
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, not an HDF5 file; pass the .h5 file made by `occsim generate`")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise BadInputError(f"{path}: not a readable HDF5 file (damaged or another format); regenerate it with `occsim generate`") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_store(path: str | os.PathLike, verify_fingerprint: bool = True) -> StoreInfo:
    """Validate an occluded-reid file and load its attributes and manifests (not the pixels).

    Raises:
        BadInputError: the file is missing, not HDF5, not ours, another format_version, or a
            dataset is missing or has the wrong dtype or shape.
    """
    path = Path(path)
    with open_h5(path) as h5:
        try:
            return _read_validated(path, h5, verify_fingerprint)
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise _fail(path, f"damaged or unreadable ({type(exc).__name__}: {exc})") from exc


def _read_validated(path: Path, h5: h5py.File, verify_fingerprint: bool) -> StoreInfo:
    attrs = h5.attrs
    if _text(attrs.get("format", "")) != FORMAT:
        raise BadInputError(f"{path}: not an occluded-reid file (no format={FORMAT!r} attribute); make one with `occsim generate`")
    version = int(attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise _fail(path, f"format_version {version}, but this reader reads {FORMAT_VERSION}")
    missing_attrs = [name for name in ROOT_ATTRS if name not in attrs]
    if missing_attrs:
        raise _fail(path, f"root attributes missing: {', '.join(missing_attrs)}")
    image_size = tuple(int(v) for v in attrs["image_size"])
    manifests: dict[str, SplitManifest] = {}
    for split in SPLITS:
        if split not in h5:
            raise _fail(path, f"split group '{split}' is missing")
        group = h5[split]
        n = None
        for column in columns_for(split):
            if column.name not in group and column.missing is not None:
                continue  # written before the column existed: SplitManifest fills it in
            if column.name not in group:
                raise _fail(path, f"dataset '{split}/{column.name}' is missing")
            dataset = group[column.name]
            expected_shape = row_shape(column, image_size)
            if n is None:
                n = dataset.shape[0]
            if dataset.shape != (n, *expected_shape):
                raise _fail(path, f"dataset '{split}/{column.name}' has shape {dataset.shape}, expected {(n, *expected_shape)}")
            if column.name != "path" and dataset.dtype != np.dtype(column.dtype):
                raise _fail(path, f"dataset '{split}/{column.name}' has dtype {dataset.dtype}, expected {np.dtype(column.dtype)}")
        columns = {c.name: group[c.name][()] for c in columns_for(split) if c.name != "images" and c.name in group}
        columns["path"] = [_text(p) for p in columns["path"]]
        manifest = SplitManifest(**columns)
        if len(manifest) and (manifest.clean_index.min() < 0 or manifest.clean_index.max() >= len(manifest)):
            raise _fail(path, f"'{split}/clean_index' points outside the split")
        if len(manifest) and (manifest.occ_source.min() < NO_SOURCE or manifest.occ_source.max() >= len(manifest)):
            raise _fail(path, f"'{split}/occ_source' points outside the split")
        manifests[split] = manifest
    generator_args = json.loads(_text(attrs["generator_args"]))
    fingerprint = _text(attrs["fingerprint"])
    for split in SPLITS:
        if (problem := check_crc_dataset(h5, split)) is not None:
            raise _fail(path, problem)
    checksums = checksum_kind(h5)
    if verify_fingerprint and compute_fingerprint(manifests, generator_args) != fingerprint:
        raise _fail(path, "the manifests do not match the stored fingerprint (the file was modified or damaged)")
    return StoreInfo(
        path=path,
        format_version=version,
        source=_text(attrs["source"]),
        seed=int(attrs["seed"]),
        generator_args=generator_args,
        package_version=_text(attrs["package_version"]),
        image_size=(image_size[0], image_size[1]),
        fingerprint=fingerprint,
        splits=manifests,
        pixel_checksums=checksums != NO_CHECKSUM,
        pixel_crc=checksums == CRC32,
    )


def read_images(h5: h5py.File, split: str, rows: Iterable[int]) -> np.ndarray:
    """Read images one row at a time (per-row reads suit the one-image chunks), each checked
    against its checksums (:class:`occsim.pixels.CheckedImages`; readers of many single rows
    keep one of those instead).

    Args:
        h5: an open file (see :func:`open_h5`).
        split: "train", "query" or "gallery".
        rows: row indices, any order.

    Returns:
        uint8 RGB images, shape [n, H, W, 3], in the order of ``rows``.

    Raises:
        BadInputError: an image fails its checksum (or cannot be read), naming file, split and row.
    """
    return CheckedImages(h5, split).read_rows(rows)


def verify_pixels(path: str | os.PathLike, progress: bool = True) -> int | None:
    """Read every image of an occluded-reid file and check its checksums (its CRC-32, and
    HDF5's Fletcher32; :func:`occsim.pixels.verify_file`).

    Args:
        path: a file that :func:`read_store` accepts.
        progress: a progress bar on stderr (when it is a terminal).

    Returns:
        The number of images checked, or None for a file written without checksums (nothing
        can be checked; it still reads).

    Raises:
        BadInputError: naming the first split and row whose pixels fail a checksum.
    """
    path = Path(path)
    with open_h5(path) as h5:
        return verify_file(h5, path, progress)
