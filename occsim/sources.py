"""Readers for source folders in the Market-1501 and DukeMTMC-reID layouts.

Both datasets ship the same three folders::

    ROOT/bounding_box_train/   train split
    ROOT/query/                query split
    ROOT/bounding_box_test/    gallery split (Market adds junk "-1_..." and distractors "0000_...")

and differ in the file names, from which the identity (pid) and camera are parsed:

- Market-1501: ``0002_c1s1_000451_03.jpg`` = pid 2, camera 1, sequence 1, frame 451, box 3;
- DukeMTMC-reID: ``0001_c2_f0046182.jpg`` = pid 1, camera 2, frame 46182.

Decisions:

- The camera is stored as written in the file name (1-based, as Market's and Duke's own
  evaluation code and torchreid's ``camid`` before its ``-= 1``); only equality matters to
  the protocol.
- The layout is detected from the names; a folder mixing both is an error naming a file.
- Files that are not images (``Thumbs.db`` in the real Market download, ``.mat`` files)
  are expected and skipped silently; a ``.jpg`` whose name does not parse is an error.
- Junk (pid -1) and distractors (pid 0) are kept, but only in the gallery, where Market
  puts them; the protocol drops junk and keeps distractors as negatives.
- Records are sorted by path, so a source reads the same on every machine.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from occsim.errors import BadInputError

SPLIT_FOLDERS: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg")
JUNK_PID = -1
DISTRACTOR_PID = 0


@dataclass(frozen=True)
class Layout:
    """A dataset's file-name convention."""

    name: str
    pattern: re.Pattern[str]
    example: str


MARKET = Layout("market1501", re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d+)_(\d+)\.jpg$"), "0002_c1s1_000451_03.jpg")
DUKE = Layout("dukemtmc-reid", re.compile(r"^(\d+)_c(\d+)_f(\d+)\.jpg$"), "0001_c2_f0046182.jpg")
LAYOUTS: tuple[Layout, ...] = (MARKET, DUKE)


class ImageRecord(NamedTuple):
    """One source image (a NamedTuple: Market-sized sources make tens of thousands).

    Attributes:
        path: file path relative to the source root, with "/" separators.
        pid: identity (-1 junk, 0 distractor).
        camid: camera as in the file name (1-based).
    """

    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class Source:
    """A parsed source folder: the records of every split, sorted by path."""

    root: Path
    layout: str
    splits: dict[str, tuple[ImageRecord, ...]] = field(repr=False)

    @property
    def name(self) -> str:
        """The source folder's name (what the HDF5 file records, never the absolute path)."""
        return self.root.resolve().name

    def __len__(self) -> int:
        return sum(len(records) for records in self.splits.values())

    def without(self, paths: set[str]) -> "Source":
        """The same source minus the records whose ``path`` is in ``paths``."""
        return Source(self.root, self.layout,
                      {s: tuple(r for r in recs if r.path not in paths) for s, recs in self.splits.items()})


def parse_name(name: str, layout: Layout) -> tuple[int, int] | None:
    """(pid, camid) of a file name in ``layout``, or None when the name does not match."""
    match = layout.pattern.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


LAYOUT_SAMPLE = 64  # names per split that decide the layout; every name is then parsed with it


def detect_layout(names: list[str]) -> Layout:
    """The layout that parses the most of ``names`` (ties go to Market-1501)."""
    counts = [sum(1 for n in names if layout.pattern.match(n)) for layout in LAYOUTS]
    return LAYOUTS[int(np.argmax(counts))]


def _check_root(root: Path) -> None:
    hint = "point --src at the folder holding bounding_box_train/, bounding_box_test/ and query/"
    if not root.exists():
        raise BadInputError(f"{root}: no such folder; {hint} (or run `occsim synth`)")
    if not root.is_dir():
        raise BadInputError(f"{root}: not a folder; {hint}")
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        raise BadInputError(f"{root}: cannot list the folder ({exc.strerror}); check its permissions") from exc
    if not entries:
        raise BadInputError(f"{root}: the folder is empty; {hint}")
    missing = [f"{folder}/" for folder in SPLIT_FOLDERS.values() if not (root / folder).is_dir()]
    if missing:
        # A common slip: pointing at the folder the archive was unpacked into.
        nested = [e for e in entries if all((root / e / f).is_dir() for f in SPLIT_FOLDERS.values())]
        did_you_mean = f" (did you mean --src {root / nested[0]}?)" if len(nested) == 1 else ""
        raise BadInputError(
            f"{root}: not in the Market-1501 layout, missing {', '.join(missing)}{did_you_mean}; {hint}")


def _list_images(folder: Path) -> list[str]:
    """Names of the image files of ``folder``, sorted; other files are skipped silently."""
    try:
        with os.scandir(folder) as it:
            names = [e.name for e in it if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()]
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot list the folder ({exc.strerror}); check its permissions") from exc
    return sorted(names)


def read_source(root: str | os.PathLike) -> Source:
    """Parse a Market-1501 or DukeMTMC-reID folder.

    Raises:
        BadInputError: the folder is missing, empty or not in the layout, a split folder has
            no image, a ``.jpg`` name does not parse, or junk / distractors appear outside the
            gallery; the message names the file or folder.
    """
    root = Path(root)
    _check_root(root)
    names = {split: _list_images(root / folder) for split, folder in SPLIT_FOLDERS.items()}
    for split, folder in SPLIT_FOLDERS.items():
        if not names[split]:
            raise BadInputError(f"{root / folder}: no .jpg images in the {split} folder; "
                                f"copy the dataset's images there or point --src at a complete download")
    # A sample decides; a name of the other layout is then reported as not parsing.
    layout = detect_layout([n for split_names in names.values() for n in split_names[:LAYOUT_SAMPLE]])
    splits: dict[str, tuple[ImageRecord, ...]] = {}
    for split, folder in SPLIT_FOLDERS.items():
        records = []
        match = layout.pattern.match
        for name in names[split]:
            parsed = match(name)
            if parsed is None:
                raise BadInputError(
                    f"{root / folder / name}: file name does not parse as {layout.name} "
                    f"(expected e.g. {layout.example}); rename or remove the file")
            pid = int(parsed.group(1))
            if pid in (JUNK_PID, DISTRACTOR_PID) and split != "gallery":
                raise BadInputError(
                    f"{root / folder / name}: junk (-1) or distractor (0) identity outside the gallery; "
                    f"move it to {SPLIT_FOLDERS['gallery']}/ or remove it")
            records.append(ImageRecord(f"{folder}/{name}", pid, int(parsed.group(2))))
        splits[split] = tuple(records)
    return Source(root=root, layout=layout.name, splits=splits)


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


def summarize_source(source: Source) -> dict[str, SplitSummary]:
    """Counts per split (images, identities, cameras, junk, distractors)."""
    summary = {}
    for split, records in source.splits.items():
        pids = [r.pid for r in records]
        summary[split] = SplitSummary(
            images=len(records),
            identities=len({p for p in pids if p not in (JUNK_PID, DISTRACTOR_PID)}),
            cameras=len({r.camid for r in records}),
            junk=pids.count(JUNK_PID),
            distractors=pids.count(DISTRACTOR_PID),
        )
    return summary


def format_summary(source: Source, summary: dict[str, SplitSummary] | None = None) -> str:
    """A small table of :func:`summarize_source` for a person to read before the work starts."""
    summary = summary if summary is not None else summarize_source(source)
    lines = [f"source {source.root} ({source.layout})",
             f"  {'split':<8}{'images':>8}{'ids':>7}{'cams':>6}{'junk':>7}{'distr':>7}"]
    for split, s in summary.items():
        lines.append(f"  {split:<8}{s.images:>8}{s.identities:>7}{s.cameras:>6}{s.junk:>7}{s.distractors:>7}")
    return "\n".join(lines)
