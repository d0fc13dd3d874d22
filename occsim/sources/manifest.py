"""The generic layout: one's own crops, listed in a CSV manifest, so that nothing is renamed.

``manifest.csv`` sits next to the images (or ``--src`` names any ``.csv`` file)::

    path,pid,camid,split
    cam1/2024-05-01/person_0007_a.png,7,1,train
    cam2/person_0007_b.jpg,7,2,query
    cam3/anything.bmp,7,3,gallery

- ``path``: relative to the CSV file's folder (``/`` separators), any image suffix;
- ``pid``: integer identity; -1 (junk) and 0 (distractor) only in the gallery, as for Market;
- ``camid``: integer camera (only equality matters to the protocol);
- ``split``: ``train``, ``query`` or ``gallery``.

Extra columns are ignored; the column order is free. A manifest without train rows makes a
test-only file. Every error names the CSV file and line number (the header is line 1).
Rows are sorted by path within each split, as for the folder layouts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from common.errors import BadInputError
from occsim.schema import COLUMNS as STORED_COLUMNS
from occsim.sources.base import DISTRACTOR_PID, JUNK_PID, SPLITS, ImageRecord, Source

MANIFEST_NAME = "manifest.csv"
COLUMNS: tuple[str, ...] = ("path", "pid", "camid", "split")


def manifest_path(root: Path) -> Path | None:
    """The manifest of ``root``: ``root`` itself when it is a .csv file, else ``root/manifest.csv``."""
    if root.suffix.lower() == ".csv" and root.is_file():
        return root
    candidate = root / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def _int(value: str, column: str, where: str) -> int:
    """``value`` as an integer that fits the stored dtype of ``column`` (pid int32, camid int16)."""
    try:
        number = int(value.strip())
    except ValueError:
        raise BadInputError(f"{where}: {column} {value!r} is not an integer; fix the manifest") from None
    dtype = np.dtype(next(c.dtype for c in STORED_COLUMNS if c.name == column))
    bounds = np.iinfo(dtype)
    if not bounds.min <= number <= bounds.max:
        raise BadInputError(f"{where}: {column} {number} does not fit the file's {dtype} {column} column "
                            f"({bounds.min} to {bounds.max}); renumber it in the manifest")
    return number


def read_manifest(root: Path) -> Source:
    """Parse a CSV manifest (see the module docstring); the source root is the CSV's folder.

    Raises:
        BadInputError: no manifest, a missing column, a path that does not exist, a pid or
            camid that is not an integer, an unknown split, junk/distractors outside the
            gallery, or an empty query or gallery; the message names the file and line.
    """
    csv_path = manifest_path(root)
    if csv_path is None:
        raise BadInputError(f"{root}: no {MANIFEST_NAME}; write one ({','.join(COLUMNS)}) next to the images "
                            f"or pass the .csv file as --src")
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{csv_path}: cannot be read as CSV ({exc}); save it as UTF-8 CSV") from exc
    if not rows:
        raise BadInputError(f"{csv_path}:1: empty file; the first line must be the header {','.join(COLUMNS)}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise BadInputError(f"{csv_path}:1: missing column {', '.join(missing)} in the header "
                            f"(found {','.join(header) or 'nothing'}); the header must name {','.join(COLUMNS)}")
    index = {c: header.index(c) for c in COLUMNS}
    splits: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines
        where = f"{csv_path}:{number}"
        if len(row) < len(header):
            raise BadInputError(f"{where}: {len(row)} fields, the header has {len(header)}; fix the manifest")
        rel = row[index["path"]].strip().replace("\\", "/")
        pid = _int(row[index["pid"]], "pid", where)
        camid = _int(row[index["camid"]], "camid", where)
        split = row[index["split"]].strip().lower()
        if split not in SPLITS:
            raise BadInputError(f"{where}: unknown split {row[index['split']]!r}; use {', '.join(SPLITS)}")
        if not rel or rel.startswith("/") or not (base / rel).is_file():
            raise BadInputError(f"{where}: {base / rel} does not exist; paths are relative to the manifest's folder")
        if pid in (JUNK_PID, DISTRACTOR_PID) and split != "gallery":
            raise BadInputError(f"{where}: junk (-1) or distractor (0) identity in the {split} split; "
                                f"only the gallery may hold them")
        if rel in seen:
            raise BadInputError(f"{where}: {rel} is already listed on line {seen[rel]}; list each image once")
        seen[rel] = number
        splits[split].append(ImageRecord(rel, pid, camid))
    for split in ("query", "gallery"):
        if not splits[split]:
            raise BadInputError(f"{csv_path}: no {split} rows; a file needs a query and a gallery split")
    return Source(root=base, layout="csv", splits={s: tuple(sorted(r)) for s, r in splits.items()},
                  args={"manifest": csv_path.name})
