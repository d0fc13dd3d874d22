"""Reader for MSMT17 (Wei et al., "Person Transfer GAN", CVPR 2018), versions V1 and V2.

The downloads hold image folders and four list files::

    MSMT17_V1/train/0000/0000_000_01_0303morning_0015_0.jpg   (V2: mask_train_v2/)
    MSMT17_V1/test/0000/0000_000_01_0303morning_0008_0.jpg    (V2: mask_test_v2/, faces blurred)
    MSMT17_V1/list_train.txt    "0000/0000_000_01_0303morning_0015_0.jpg 0" (path under train/, pid)
    MSMT17_V1/list_val.txt      a subset of the training identities, same format
    MSMT17_V1/list_query.txt    paths under test/
    MSMT17_V1/list_gallery.txt  paths under test/

The camera is the third ``_`` field of the file name (``..._01_...`` = camera 1, of 15),
as torchreid's ``MSMT17.process_dir`` reads it (``int(name.split('_')[2])``, which then
subtracts 1; we keep the 1-based number). The pid is the list's second column (test pids
restart at 0 and are disjoint from the training folder's, so they are not remapped).

Counts (the paper, torchreid's docstring): 4,101 identities, 15 cameras; train 1,041 ids /
32,621 images of which ``list_train.txt`` holds 30,248 and ``list_val.txt`` 2,373; query
3,060 ids / 11,659 images; gallery 3,060 ids / 82,161 images. Following torchreid and
fast-reid (their default, "to fairly compare with published methods"), the train split is
``list_train.txt`` only; ``list_val.txt`` is not read.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import BadInputError
from occsim.sources.base import ImageRecord, Source, check_folder

LIST_FILES: dict[str, str] = {"train": "list_train.txt", "query": "list_query.txt", "gallery": "list_gallery.txt"}
# version -> (train folder, test folder)
VERSIONS: dict[str, tuple[str, str]] = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}


def msmt17_version(root: Path) -> str | None:
    """"V1" or "V2" when ``root`` holds that version's image folders and ``list_train.txt``."""
    if not (root / LIST_FILES["train"]).is_file():
        return None
    for version, (train, test) in VERSIONS.items():
        if (root / train).is_dir() and (root / test).is_dir():
            return version
    return None


def _camera(name: str) -> int | None:
    fields = name.split("_")
    if len(fields) < 4 or not fields[2].isdigit():
        return None
    return int(fields[2])


def _files_under(folder: Path) -> set[str]:
    """Every file below ``folder`` as a "/"-separated relative path (one walk, not a stat per line)."""
    present = set()
    try:
        for dirpath, _, filenames in os.walk(folder, onerror=_raise):
            rel = os.path.relpath(dirpath, folder).replace(os.sep, "/")
            present.update(name if rel == "." else f"{rel}/{name}" for name in filenames)
    except OSError as exc:
        raise BadInputError(f"{folder}: cannot list the folder ({exc.strerror or exc}); check its permissions") from exc
    return present


def _raise(exc: OSError) -> None:
    raise exc


def _read_list(list_path: Path, folder: Path, prefix: str, present: set[str]) -> tuple[ImageRecord, ...]:
    """The records of one list file: each line "relative/path.jpg pid"; errors name file and line.

    ``present``: the files under ``folder`` (:func:`_files_under`).
    """
    try:
        lines = list_path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{list_path}: cannot be read ({exc}); restore it from the MSMT17 download") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{list_path}:{number}"
        parts = line.split()
        if len(parts) != 2:
            raise BadInputError(f"{where}: expected 'path pid', got {line.strip()!r}; fix or restore the list file")
        rel, pid_text = parts
        try:
            pid = int(pid_text)
        except ValueError:
            raise BadInputError(f"{where}: pid {pid_text!r} is not an integer; fix or restore the list file") from None
        camid = _camera(rel.rsplit("/", 1)[-1])
        if camid is None:
            raise BadInputError(f"{where}: {rel!r} does not parse as an MSMT17 name "
                                f"(e.g. 0000_000_01_0303morning_0015_0.jpg); fix or restore the list file")
        if rel not in present:
            raise BadInputError(f"{where}: {folder / rel} does not exist; copy the image there or "
                                f"restore the download")
        records.append(ImageRecord(f"{prefix}/{rel}", pid, camid))
    if not records:
        raise BadInputError(f"{list_path}: lists no image; restore it from the MSMT17 download")
    return tuple(sorted(records))


def read_msmt17(root: Path) -> Source:
    """Parse an ``MSMT17_V1`` or ``MSMT17_V2`` folder (see the module docstring).

    Raises:
        BadInputError: a list file or image folder is missing, a line does not parse, or a
            listed image does not exist; the message names the list file and line number.
    """
    hint = "point --src at MSMT17_V1/ (train/, test/, list_*.txt) or MSMT17_V2/ (mask_train_v2/, mask_test_v2/)"
    check_folder(root, hint)
    version = msmt17_version(root)
    if version is None:
        raise BadInputError(f"{root}: not an MSMT17 folder (needs list_train.txt and train/ + test/ or "
                            f"mask_train_v2/ + mask_test_v2/); {hint}")
    train_folder, test_folder = VERSIONS[version]
    splits = {}
    files: dict[str, set[str]] = {}
    for split, list_name in LIST_FILES.items():
        if not (root / list_name).is_file():
            raise BadInputError(f"{root / list_name}: missing; restore it from the MSMT17 download")
        folder = train_folder if split == "train" else test_folder
        if folder not in files:
            files[folder] = _files_under(root / folder)
        splits[split] = _read_list(root / list_name, root / folder, folder, files[folder])
    return Source(root=root, layout="msmt17", splits=splits, args={"version": version})
