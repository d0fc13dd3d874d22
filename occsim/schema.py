"""The HDF5 schema (format_version 1): the one place that says what an occluded-reid file holds.

Both the writer and the reader in :mod:`occsim.store` import these definitions, so the two
cannot drift apart. See docs/design.md, "The HDF5 file".

Additive parts of format_version 1 (files written before them still read): the per-image
pixel checksums (:data:`PIXEL_CHECKSUM`), the occluder code ``pedestrian`` and the per-row
``occ_source`` dataset: for a ``pedestrian`` row, the row (in the same split) of the clean
image whose region was pasted over it, -1 for every other row. A file without ``occ_source``
reads as all -1 (see :attr:`ColumnSpec.missing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

FORMAT = "occluded-reid"
FORMAT_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "query", "gallery")
DEFAULT_IMAGE_SIZE: tuple[int, int] = (128, 64)  # (H, W): Market-1501's native crop size

# Root attributes every file carries.
ROOT_ATTRS: tuple[str, ...] = (
    "format",
    "format_version",
    "source",
    "seed",
    "generator_args",  # JSON text of the generator's arguments
    "package_version",
    "image_size",  # [H, W]
    "fingerprint",  # sha256 hex of the manifests + generator arguments
)


class OccType(IntEnum):
    """Codes stored in ``occ_type``; 0 is a clean row. New occluders append a code."""

    NONE = 0
    MEAN = 1
    BLACK = 2
    RANDOM = 3
    REAL = 4  # genuinely occluded crop of a real occluded benchmark (box -1s); no synthetic occluder
    PEDESTRIAN = 5  # a region of another identity's clean image of the split (row in occ_source)


OCC_TYPE_NAMES: tuple[str, ...] = tuple(t.name.lower() for t in OccType)
REAL_OCCLUSION = "real"
# The synthetic occluders (what `occsim generate --type` draws); "real" is data, not an occluder.
OCCLUDER_NAMES: tuple[str, ...] = tuple(n for n in OCC_TYPE_NAMES[1:] if n != REAL_OCCLUSION)
# Every kind of occluded row a query set can select ("occluded:<kind>").
OCCLUSION_KINDS: tuple[str, ...] = OCC_TYPE_NAMES[1:]


def occ_type_code(name: str) -> int:
    """Code of an occluder name ("mean" -> 1); ValueError for an unknown name."""
    try:
        return OCC_TYPE_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown occlusion type {name!r}; known: {', '.join(OCCLUSION_KINDS)}") from None


#: h5py's variable-length UTF-8 string (``h5py.string_dtype("utf-8")``), spelled without importing
#: h5py so that the schema -- and ``occsim --help`` -- load without it.
STRING_DTYPE = np.dtype("O", metadata={"vlen": str})


@dataclass(frozen=True)
class ColumnSpec:
    """One per-row dataset of a split group.

    Attributes:
        name: dataset name inside the split group.
        dtype: numpy dtype (or h5py string dtype) of the stored values.
        row_shape: shape of one row; "image" is replaced by (H, W, 3).
        train_only: present only in the ``train`` group.
        missing: None for a column every file has; otherwise the column is optional (added
            after files were written without it): such a file reads as if every row held
            ``missing``, and the fingerprint covers the column only when some row differs from
            it, so that the fingerprints of those files (and of files like them) do not change.
    """

    name: str
    dtype: object
    row_shape: tuple[int, ...] | str = ()
    train_only: bool = False
    missing: int | None = None


NO_SOURCE = -1  # occ_source of a row that shows no other image

COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("images", np.uint8, "image"),
    ColumnSpec("pid", np.int32),
    ColumnSpec("label", np.int32, train_only=True),
    ColumnSpec("camid", np.int16),
    ColumnSpec("occluded", np.bool_),
    ColumnSpec("occ_type", np.uint8),
    ColumnSpec("box", np.int16, (4,)),
    ColumnSpec("clean_index", np.int32),
    ColumnSpec("path", STRING_DTYPE),
    # Row of the clean image whose region a ``pedestrian`` row shows; -1 for every other row.
    ColumnSpec("occ_source", np.int32, missing=NO_SOURCE),
)
MANIFEST_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.name != "images")
NO_BOX: tuple[int, int, int, int] = (-1, -1, -1, -1)


def columns_for(split: str) -> tuple[ColumnSpec, ...]:
    """The datasets a split group holds (those with ``missing`` set may be absent from older files)."""
    return tuple(c for c in COLUMNS if split == "train" or not c.train_only)


def row_shape(column: ColumnSpec, image_size: tuple[int, int]) -> tuple[int, ...]:
    """Shape of one row of ``column`` for images of ``image_size`` = (H, W)."""
    if column.row_shape == "image":
        return (int(image_size[0]), int(image_size[1]), 3)
    return tuple(column.row_shape)  # type: ignore[arg-type]


# Pixel checksums, an additive part of format_version 1: the ``images`` dataset of a split
# carries HDF5's Fletcher32 filter, one checksum per chunk, i.e. per image, which HDF5 checks
# on every read of that image. Files written before checksums existed have none and still
# read (``occsim info`` says that their pixels cannot be checked).
PIXEL_CHECKSUM = "fletcher32"


def image_dataset_options(n_rows: int, image_size: tuple[int, int]) -> dict[str, object]:
    """h5py ``create_dataset`` options of a split's ``images``: one image per chunk (the training
    loader reads single rows at random), each chunk with its Fletcher32 checksum. An empty split
    is stored contiguous (HDF5 chunks need a non-zero size), so it has nothing to check."""
    if n_rows == 0:
        return {}
    return {"chunks": (1, int(image_size[0]), int(image_size[1]), 3), PIXEL_CHECKSUM: True}


# A CRC-32 per image, an additive part of format_version 1: each split holds ``images_crc32``,
# uint32 (N,), the ``zlib.crc32`` of row i's pixel bytes (C order), checked on every read by
# :mod:`occsim.pixels`. Fletcher32 cannot tell a 0x0000 word from 0xFFFF (a black patch whose
# bytes were flipped to 0xFF passes it); CRC-32 sees every flipped byte. Files written before
# it still read (``occsim info`` says which checksums a file has).
PIXEL_CRC = "images_crc32"
