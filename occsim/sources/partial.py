"""Readers for the test-only occluded benchmarks: Occluded-REID and Partial-REID.

Both are evaluated cross-domain (train on Market-1501, test here), so they have no train
split: the query set is the occluded (or partial) crops, the gallery the whole-body crops
of the same people.

- Occluded-REID (Zhuo et al., "Occluded Person Re-identification", ICME 2018;
  ``Occluded_REID/``)::

      occluded_body_images/001/001_01.tif ... whole_body_images/200/200_05.tif

  200 identities, 5 occluded + 5 whole-body TIFF crops each: query 1,000 images, gallery
  1,000 images (the counts of the dataset's release and of the readers in PVPM, light-reid
  and fast-reid).
- Partial-REID (Zheng et al., "Partial Person Re-identification", ICCV 2015;
  ``Partial-REID_Dataset/`` or ``PartialREID/``)::

      partial_body_images/001_001.jpg   (query: the cropped partial bodies)
      whole_body_images/001_001.jpg     (gallery)
      occluded_body_images/001_001.jpg  (the uncropped occluded images, not read)

  60 identities, 5 of each kind: query 300, gallery 300. Query = ``partial_body_images``
  as in fast-reid's ``PartialREID`` and PVPM's ``Partial_REID`` (the DSR paper's cropped
  probes).

Files may sit flat (``NNN_MM.ext``) or in one folder per identity (``NNN/NNN_MM.ext``); the
pid is the name's leading number, and a per-identity folder must agree with it. Any image
suffix decodes (.tif, .jpg, .png, .bmp). Every query crop is genuinely occluded: its row is
stored with the occluder code ``real``. Cameras: the datasets record none; as in light-reid
and fast-reid, the query is camera 1 and the gallery camera 2, so that every gallery image of
the query's identity counts as a match under the Market protocol.
"""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import BadInputError
from occsim.sources.base import ImageRecord, Source, check_folder, is_image_name, list_folder, list_images

WHOLE = "whole_body_images"
OCCLUDED = "occluded_body_images"
PARTIAL = "partial_body_images"
NAME = re.compile(r"^(\d+)_(\d+)\.[A-Za-z]+$")
QUERY_CAMERA, GALLERY_CAMERA = 1, 2


def detect_test_only(root: Path) -> str | None:
    """"partial-reid", "occluded-reid" or None from the folders of ``root``."""
    if not (root / WHOLE).is_dir():
        return None
    if (root / PARTIAL).is_dir():
        return "partial-reid"
    if (root / OCCLUDED).is_dir():
        return "occluded-reid"
    return None


def _read_folder(root: Path, folder: str, camid: int, occluded: bool, example: str) -> tuple[ImageRecord, ...]:
    """The images of ``root/folder``, flat or in per-identity subfolders."""
    base = root / folder
    if not base.is_dir():
        raise BadInputError(f"{root}: no {folder}/ folder; point --src at the dataset folder holding "
                            f"{folder}/ and {WHOLE}/")
    records = []
    for entry in list_folder(base):
        path = base / entry
        if path.is_dir():
            names, sub = list_images(path), f"{entry}/"
        elif is_image_name(entry):
            names, sub = [entry], ""
        else:
            continue  # Thumbs.db, read-mes
        for name in names:
            match = NAME.match(name)
            if match is None:
                raise BadInputError(f"{base}/{sub}{name}: file name does not parse (expected e.g. {example}); "
                                    f"rename or remove the file")
            pid = int(match.group(1))
            if sub and (not entry.isdigit() or int(entry) != pid):
                raise BadInputError(f"{base}/{sub}{name}: identity {pid} in the folder of identity {entry}; "
                                    f"move the file into its identity's folder")
            records.append(ImageRecord(f"{folder}/{sub}{name}", pid, camid, occluded))
    if not records:
        raise BadInputError(f"{base}: no images; copy the dataset's {folder}/ there")
    return tuple(sorted(records))


def read_test_only(root: Path, layout: str) -> Source:
    """Parse an Occluded-REID (``layout`` "occluded-reid") or Partial-REID folder.

    Raises:
        BadInputError: a missing folder, a name that does not parse, a file in another
            identity's folder, or an empty folder; the message names the file or folder.
    """
    query_folder, example = ((OCCLUDED, "001/001_01.tif") if layout == "occluded-reid"
                             else (PARTIAL, "001_001.jpg"))
    check_folder(root, f"point --src at the dataset folder holding {query_folder}/ and {WHOLE}/")
    query = _read_folder(root, query_folder, QUERY_CAMERA, True, example)
    gallery = _read_folder(root, WHOLE, GALLERY_CAMERA, False, example)
    missing = sorted({r.pid for r in query} - {r.pid for r in gallery})
    if missing:
        raise BadInputError(f"{root / WHOLE}: no whole-body image of identity {missing[0]} "
                            f"({len(missing)} query identities have none); restore the download")
    return Source(root=root, layout=layout, splits={"train": (), "query": query, "gallery": gallery},
                  args={"query_folder": query_folder, "gallery_folder": WHOLE})
