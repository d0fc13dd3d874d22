"""Readers for the Market-1501 family of layouts: Market-1501, DukeMTMC-reID, Occluded-Duke
and CUHK03-NP. All four ship the same three folders::

    ROOT/bounding_box_train/   train split
    ROOT/query/                query split
    ROOT/bounding_box_test/    gallery split (Market adds junk "-1_..." and distractors "0000_...")

and differ in the file names, from which the identity (pid) and camera are parsed:

- Market-1501: ``0002_c1s1_000451_03.jpg`` = pid 2, camera 1, sequence 1, frame 451, box 3.
  Counts from the authors' evaluation code (and torchreid's ``Market1501``): train 751 ids /
  12,936 images, query 750 ids / 3,368 images, gallery 19,732 images (751 ids incl. 2,793
  distractors "0000" and 3,819 junk "-1"), 6 cameras.
- DukeMTMC-reID: ``0001_c2_f0046182.jpg`` = pid 1, camera 2, frame 46182. Train 702 ids /
  16,522 images, query 702 ids / 2,228 images, gallery 1,110 ids / 17,661 images, 8 cameras.
- Occluded-Duke (Miao et al., ICCV 2019, ``Occluded_Duke/`` made by the authors'
  ``convert_duke_to_occduke.py``): Duke's names, re-split so that every query is occluded:
  train 702 ids / 15,618 images, query 519 ids / 2,210 images, gallery 1,110 ids / 17,661
  images. The names alone cannot tell it from Duke, so it is detected by the folder name
  (``Occluded_Duke``, any case, ``_``/``-``/nothing between) or forced with
  ``--layout occluded-duke``; its query rows are stored as really occluded (code ``real``).
- CUHK03-NP (Zhong et al., CVPR 2017, "new protocol"): ``cuhk03-np/detected/`` and
  ``cuhk03-np/labeled/``, each in this layout with names ``0001_c1_1.png`` (pid, camera 1
  or 2, index), PNG. Labeled: train 767 ids / 7,368 images, query 700 ids / 1,400 images,
  gallery 700 ids / 5,328 images; detected: 7,365 / 1,400 / 5,332. ``--variant`` picks the
  subfolder (default ``detected``, the harder one most papers report first).

Decisions:

- The camera is stored as written in the file name (1-based, as Market's and Duke's own
  evaluation code and torchreid's ``camid`` before its ``-= 1``); only equality matters to
  the protocol.
- Market and Duke are told apart by the names; a folder mixing both is an error naming a file.
- Files that are not images (``Thumbs.db`` in the real Market download, ``.mat`` files)
  are expected and skipped silently; an image whose name does not parse is an error.
- Junk (pid -1) and distractors (pid 0) are kept, but only in the gallery, where Market
  puts them; the protocol drops junk and keeps distractors as negatives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import BadInputError
from occsim.sources.base import (
    DISTRACTOR_PID,
    JUNK_PID,
    ImageRecord,
    Source,
    check_folder,
    list_images,
)

SPLIT_FOLDERS: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
CUHK03_VARIANTS: tuple[str, ...] = ("detected", "labeled")


@dataclass(frozen=True)
class Layout:
    """A dataset's file-name convention: group 1 is the pid, group 2 the camera."""

    name: str
    pattern: re.Pattern[str]
    example: str


MARKET = Layout("market1501", re.compile(r"^(-?\d+)_c(\d)s(\d)_(\d+)_(\d+)\.jpg$"), "0002_c1s1_000451_03.jpg")
DUKE = Layout("dukemtmc-reid", re.compile(r"^(\d+)_c(\d+)_f(\d+)\.jpg$"), "0001_c2_f0046182.jpg")
OCCLUDED_DUKE = Layout("occluded-duke", DUKE.pattern, DUKE.example)
CUHK03_NP = Layout("cuhk03-np", re.compile(r"^(\d+)_c([12])_(\d+)\.png$"), "0001_c1_1.png")
LAYOUTS: tuple[Layout, ...] = (MARKET, DUKE)  # told apart by their names
OCCLUDED_DUKE_FOLDER = re.compile(r"occluded[-_]?duke", re.IGNORECASE)


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


def has_market_folders(folder: Path) -> bool:
    return all((folder / f).is_dir() for f in SPLIT_FOLDERS.values())


def _check_root(root: Path) -> None:
    hint = "point --src at the folder holding bounding_box_train/, bounding_box_test/ and query/"
    entries = check_folder(root, f"{hint} (or run `occsim synth`)")
    missing = [f"{folder}/" for folder in SPLIT_FOLDERS.values() if not (root / folder).is_dir()]
    if missing:
        # A common slip: pointing at the folder the archive was unpacked into.
        nested = [e for e in entries if has_market_folders(root / e)]
        did_you_mean = f" (did you mean --src {root / nested[0]}?)" if len(nested) == 1 else ""
        raise BadInputError(
            f"{root}: not in the Market-1501 layout, missing {', '.join(missing)}{did_you_mean}; {hint}")


def _read_folders(root: Path, base: str, layout: Layout | None, real_occluded_query: bool = False,
                  suffixes: tuple[str, ...] = (".jpg", ".jpeg")) -> tuple[str, dict[str, tuple[ImageRecord, ...]]]:
    """Parse ``root/base/{bounding_box_train,query,bounding_box_test}`` (``base`` "" or a subfolder).

    ``layout`` None detects Market or Duke from the names. Returns (layout name, splits).
    """
    folder_root = root / base if base else root
    _check_root(folder_root)
    prefix = f"{base}/" if base else ""
    names = {split: list_images(folder_root / folder, suffixes) for split, folder in SPLIT_FOLDERS.items()}
    kinds = "/".join(s.lstrip(".") for s in suffixes)
    for split, folder in SPLIT_FOLDERS.items():
        if not names[split]:
            raise BadInputError(f"{folder_root / folder}: no .{kinds.split('/')[0]} images in the {split} folder; "
                                f"copy the dataset's images there or point --src at a complete download")
    if layout is None:
        # A sample decides; a name of the other layout is then reported as not parsing.
        layout = detect_layout([n for split_names in names.values() for n in split_names[:LAYOUT_SAMPLE]])
    splits: dict[str, tuple[ImageRecord, ...]] = {}
    match = layout.pattern.match
    for split, folder in SPLIT_FOLDERS.items():
        records = []
        occluded = real_occluded_query and split == "query"
        for name in names[split]:
            parsed = match(name)
            if parsed is None:
                raise BadInputError(
                    f"{folder_root / folder / name}: file name does not parse as {layout.name} "
                    f"(expected e.g. {layout.example}); rename or remove the file")
            pid = int(parsed.group(1))
            if pid in (JUNK_PID, DISTRACTOR_PID) and split != "gallery":
                raise BadInputError(
                    f"{folder_root / folder / name}: junk (-1) or distractor (0) identity outside the gallery; "
                    f"move it to {SPLIT_FOLDERS['gallery']}/ or remove it")
            records.append(ImageRecord(f"{prefix}{folder}/{name}", pid, int(parsed.group(2)), occluded))
        splits[split] = tuple(records)
    return layout.name, splits


def is_occluded_duke_folder(root: Path) -> bool:
    return OCCLUDED_DUKE_FOLDER.search(root.resolve().name) is not None


def read_market(root: Path, layout: str | None = None) -> Source:
    """Parse a Market-1501, DukeMTMC-reID or Occluded-Duke folder (``layout`` forces one).

    Raises:
        BadInputError: the folder is missing, empty or not in the layout, a split folder has
            no image, a ``.jpg`` name does not parse, or junk / distractors appear outside the
            gallery; the message names the file or folder.
    """
    if layout is None and is_occluded_duke_folder(root):
        layout = OCCLUDED_DUKE.name
    forced = {MARKET.name: MARKET, DUKE.name: DUKE, OCCLUDED_DUKE.name: OCCLUDED_DUKE}.get(layout or "")
    name, splits = _read_folders(root, "", forced, real_occluded_query=forced is OCCLUDED_DUKE)
    return Source(root=root, layout=name, splits=splits)


def cuhk03_variants(root: Path) -> list[str]:
    """The CUHK03-NP subfolders (detected/, labeled/) of ``root`` in the Market layout."""
    return [v for v in CUHK03_VARIANTS if has_market_folders(root / v)]


def read_cuhk03_np(root: Path, variant: str | None = None) -> Source:
    """Parse ``cuhk03-np/`` (its ``detected/`` or ``labeled/`` subfolder, per ``variant``)."""
    variant = variant or "detected"
    if variant not in CUHK03_VARIANTS:
        raise BadInputError(f"--variant {variant!r}: unknown CUHK03-NP variant; use detected or labeled")
    check_folder(root, "point --src at the cuhk03-np/ folder holding detected/ and labeled/")
    if not (root / variant).is_dir():
        present = ", ".join(f"{v}/" for v in cuhk03_variants(root)) or "neither"
        raise BadInputError(f"{root}: no {variant}/ subfolder (found {present}); "
                            f"pass --variant with one that is there")
    name, splits = _read_folders(root, variant, CUHK03_NP, suffixes=(".png",))
    return Source(root=root, layout=name, splits=splits, args={"variant": variant})
