"""What every source reader shares: the records, the parsed source, listing and counting.

A reader turns a downloaded dataset folder into a :class:`Source`: per split (``train``,
``query``, ``gallery``) a tuple of :class:`ImageRecord` sorted by path, so that a source
reads the same on every machine. Conventions every reader keeps:

- the camera is 1-based as the dataset writes it (only equality matters to the protocol);
- junk (pid -1) and distractors (pid 0) appear only in the gallery;
- a split may be empty only for a test-only benchmark (no ``train`` rows);
- ``occluded`` marks a crop that is genuinely occluded in the real data (the query sets of
  Occluded-Duke, Occluded-REID, Partial-REID); the file stores it with the occluder code
  ``real`` and box -1s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from common.errors import BadInputError
from occsim.schema import SPLITS  # noqa: F401 (re-exported: the readers' split names are the file's)
# What OpenCV's imdecode reads in every build we ship (see common.decoding.decode_image).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
JUNK_PID = -1
DISTRACTOR_PID = 0


class ImageRecord(NamedTuple):
    """One source image (a NamedTuple: Market-sized sources make tens of thousands).

    Attributes:
        path: file path relative to the source root, with "/" separators.
        pid: identity (-1 junk, 0 distractor).
        camid: camera (1-based).
        occluded: the crop is genuinely occluded in the source (a real occluded benchmark).
    """

    path: str
    pid: int
    camid: int
    occluded: bool = False


@dataclass(frozen=True)
class Source:
    """A parsed source folder: the records of every split, sorted by path.

    Attributes:
        root: the folder given (``--src``).
        layout: the reader's name ("market1501", "cuhk01", ...).
        splits: records per split name, in :data:`SPLITS` order.
        args: what the reader decided that shapes the file beyond the folder itself (a
            CUHK01 split seed and the identities it chose, a CUHK03-NP variant); recorded
            in the file's generator arguments as ``source_args``. JSON-serialisable.
    """

    root: Path
    layout: str
    splits: dict[str, tuple[ImageRecord, ...]] = field(repr=False)
    args: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The source folder's name (what the HDF5 file records, never the absolute path)."""
        return self.root.resolve().name

    @property
    def test_only(self) -> bool:
        """True for a benchmark that has no training split (Occluded-REID, Partial-REID)."""
        return not self.splits["train"]

    def __len__(self) -> int:
        return sum(len(records) for records in self.splits.values())

    def without(self, paths: set[str]) -> "Source":
        """The same source minus the records whose ``path`` is in ``paths``."""
        return Source(self.root, self.layout,
                      {s: tuple(r for r in recs if r.path not in paths) for s, recs in self.splits.items()},
                      self.args)


def list_folder(folder: Path) -> list[str]:
    """Every entry of ``folder``, sorted; an unreadable folder is a :class:`BadInputError`."""
    try:
        return sorted(os.listdir(folder))
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot list the folder ({exc.strerror}); check its permissions") from exc


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def list_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[str]:
    """Names of the image files of ``folder`` (by suffix, any case), sorted; other files
    (``Thumbs.db``, ``.mat``, read-mes) are skipped silently."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.lower().endswith(suffixes) and e.is_file()]
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot list the folder ({exc.strerror}); check its permissions") from exc
    return sorted(names)


def check_folder(root: Path, hint: str) -> list[str]:
    """The entries of an existing, non-empty folder ``root``; else a one-line error with ``hint``."""
    if not root.exists():
        raise BadInputError(f"{root}: no such folder; {hint}")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder; {hint}")
    entries = list_folder(root)
    if not entries:
        raise BadInputError(f"{root}: the folder is empty; {hint}")
    return entries


def train_labels(pids: np.ndarray | list[int]) -> np.ndarray:
    """Contiguous class indices 0..P-1 in ascending pid order, shape [N] int32."""
    pids = np.asarray(pids)
    _, labels = np.unique(pids, return_inverse=True)
    return labels.astype(np.int32).reshape(-1)


@dataclass(frozen=True)
class SplitSummary:
    """Counts of one split; ``identities`` excludes junk and distractors, counted apart."""

    images: int
    identities: int
    cameras: int
    junk: int
    distractors: int
    occluded: int = 0


def summarize_source(source: Source) -> dict[str, SplitSummary]:
    """Counts per split (images, identities, cameras, junk, distractors, really occluded)."""
    summary = {}
    for split, records in source.splits.items():
        pids = [r.pid for r in records]
        summary[split] = SplitSummary(
            images=len(records),
            identities=len({p for p in pids if p not in (JUNK_PID, DISTRACTOR_PID)}),
            cameras=len({r.camid for r in records}),
            junk=pids.count(JUNK_PID),
            distractors=pids.count(DISTRACTOR_PID),
            occluded=sum(1 for r in records if r.occluded),
        )
    return summary


def format_summary(source: Source, summary: dict[str, SplitSummary] | None = None) -> str:
    """A small table of :func:`summarize_source` for a person to read before the work starts."""
    summary = summary if summary is not None else summarize_source(source)
    real = any(s.occluded for s in summary.values())
    lines = [f"source {source.root} ({source.layout}{', test only' if source.test_only else ''})",
             f"  {'split':<8}{'images':>8}{'ids':>7}{'cams':>6}{'junk':>7}{'distr':>7}"
             + (f"{'real occ':>10}" if real else "")]
    for split, s in summary.items():
        lines.append(f"  {split:<8}{s.images:>8}{s.identities:>7}{s.cameras:>6}{s.junk:>7}{s.distractors:>7}"
                     + (f"{s.occluded:>10}" if real else ""))
    return "\n".join(lines)
