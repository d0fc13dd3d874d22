"""Reader for CUHK01 (Li, Zhao and Wang, "Human reidentification with transferred metric
learning", ACCV 2012).

The download holds one folder of PNG crops (160x60)::

    ROOT/campus/0001001.png ... ROOT/campus/0971004.png

``NNNNCCC.png``: NNNN the identity (0001..0971), CCC the image (001..004); images 001 and
002 were taken by camera A, 003 and 004 by camera B. 971 identities x 4 images = 3,884.

There is no official train/test split; this follows torchreid's ``CUHK01`` (the common
485/486 protocol): pid = int(name[:4]) (torchreid subtracts 1; we keep the file's number as
for Market), camera = (int(name[4:7]) - 1) // 2 + 1 (1 = camera A, 2 = camera B; torchreid
stores 0/1), half the identities rounded down (971 // 2 = 485) train on all 4 images
(1,940 rows), the other 486 test: query = their camera-A images (972), gallery = their
camera-B images (972).

The 485 training identities are ``sorted(numpy.random.default_rng(split_seed).permutation(ids)[:485])``;
``split_seed`` and the chosen identities are recorded in the file (``source_args``), so a
file says exactly which identities it trained on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.errors import BadInputError
from occsim.sources.base import ImageRecord, Source, check_folder, list_images

CAMPUS = "campus"
NAME = re.compile(r"^(\d{4})(\d{3})\.png$")
EXAMPLE = "0001001.png"
IMAGES_PER_CAMERA = 2  # images 001-002 camera A, 003-004 camera B


def parse_cuhk01_name(name: str) -> tuple[int, int] | None:
    """(pid, camid) of a CUHK01 file name ("0003004.png" -> (3, 2)), or None."""
    match = NAME.match(name)
    if match is None:
        return None
    image = int(match.group(2))
    if image < 1:
        return None
    return int(match.group(1)), (image - 1) // IMAGES_PER_CAMERA + 1


def is_cuhk01(root: Path) -> bool:
    """A ``campus/`` subfolder whose first PNG parses as CUHK01."""
    folder = root / CAMPUS
    if not folder.is_dir():
        return False
    names = list_images(folder, (".png",))
    return bool(names) and parse_cuhk01_name(names[0]) is not None


def cuhk01_split(pids: list[int], split_seed: int) -> list[int]:
    """The training identities: half (rounded down) of ``pids``, by a seeded permutation, sorted."""
    ids = np.array(sorted(set(pids)))
    order = np.random.default_rng(split_seed).permutation(len(ids))
    return sorted(int(p) for p in ids[order[: len(ids) // 2]])


def read_cuhk01(root: Path, split_seed: int = 0) -> Source:
    """Parse a CUHK01 folder and split it 485/486 (see the module docstring).

    Raises:
        BadInputError: no ``campus/`` folder, no PNG in it, a name that does not parse, or
            fewer than two identities; the message names the file or folder.
    """
    hint = f"point --src at the CUHK01 folder holding {CAMPUS}/{EXAMPLE} ..."
    check_folder(root, hint)
    folder = root / CAMPUS
    if not folder.is_dir():
        raise BadInputError(f"{root}: no {CAMPUS}/ folder; {hint}")
    names = list_images(folder)
    if not names:
        raise BadInputError(f"{folder}: no .png images; copy CUHK01's campus/ images there")
    records = []
    for name in names:
        parsed = parse_cuhk01_name(name)
        if parsed is None:
            raise BadInputError(f"{folder / name}: file name does not parse as cuhk01 "
                                f"(expected NNNNCCC.png, e.g. {EXAMPLE}); rename or remove the file")
        records.append(ImageRecord(f"{CAMPUS}/{name}", *parsed))
    pids = [r.pid for r in records]
    if len(set(pids)) < 2:
        raise BadInputError(f"{folder}: only {len(set(pids))} identity; the 50/50 split needs at least two")
    train_ids = set(cuhk01_split(pids, split_seed))
    splits = {
        "train": tuple(r for r in records if r.pid in train_ids),
        "query": tuple(r for r in records if r.pid not in train_ids and r.camid == 1),
        "gallery": tuple(r for r in records if r.pid not in train_ids and r.camid != 1),
    }
    args = {"split_seed": int(split_seed), "split_rule": "torchreid CUHK01: half the ids train; "
            "test camera A = query, camera B = gallery", "train_ids": sorted(train_ids)}
    return Source(root=root, layout="cuhk01", splits=splits, args=args)
