"""Source readers: a downloaded re-ID dataset folder -> :class:`Source` (records per split).

One small module per family; :func:`read_source` detects the layout (or takes ``layout``)
and calls the reader. Layouts and what identifies them:

======================  ===================================================================
``market1501``          ``bounding_box_train/``, ``query/``, ``bounding_box_test/``, Market names
``dukemtmc-reid``       the same folders, Duke names (:mod:`occsim.sources.market`)
``occluded-duke``       Duke's folders and names in a folder named ``Occluded_Duke``
``cuhk03-np``           ``detected/`` and/or ``labeled/``, each in the Market layout
``cuhk01``              ``campus/NNNNCCC.png`` (:mod:`occsim.sources.cuhk01`)
``msmt17``              ``list_train.txt`` + ``train/``/``test/`` (V1) or ``mask_*_v2/`` (V2)
``occluded-reid``       ``occluded_body_images/`` + ``whole_body_images/`` (test only)
``partial-reid``        ``partial_body_images/`` + ``whole_body_images/`` (test only)
``csv``                 ``manifest.csv`` (``path,pid,camid,split``), or ``--src FILE.csv``
======================  ===================================================================

Detection tries the most specific signature first: a manifest, MSMT17's list files, the
test-only folders, CUHK01, CUHK03-NP, then the Market folders; ``--layout`` skips it.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import BadInputError
from occsim.sources.base import (
    DISTRACTOR_PID,
    IMAGE_SUFFIXES,
    JUNK_PID,
    SPLITS,
    ImageRecord,
    Source,
    SplitSummary,
    format_summary,
    summarize_source,
    train_labels,
)
from occsim.sources.cuhk01 import is_cuhk01, read_cuhk01
from occsim.sources.manifest import manifest_path, read_manifest
from occsim.sources.market import (
    DUKE,
    MARKET,
    SPLIT_FOLDERS,
    cuhk03_variants,
    detect_layout,
    has_market_folders,
    parse_name,
    read_cuhk03_np,
    read_market,
)
from occsim.sources.msmt17 import msmt17_version, read_msmt17
from occsim.sources.partial import detect_test_only, read_test_only

__all__ = [
    "DISTRACTOR_PID", "DUKE", "IMAGE_SUFFIXES", "JUNK_PID", "LAYOUT_NAMES", "MARKET", "SPLITS", "SPLIT_FOLDERS",
    "ImageRecord", "Source", "SplitSummary", "detect_layout", "format_summary", "parse_name", "read_source",
    "summarize_source", "train_labels",
]

LAYOUT_NAMES: tuple[str, ...] = ("market1501", "dukemtmc-reid", "occluded-duke", "cuhk03-np", "cuhk01", "msmt17",
                                  "occluded-reid", "partial-reid", "csv")

# What detection looks for, in order (the unknown-layout error lists these).
_LOOKED_FOR = (
    "manifest.csv (csv)",
    "list_train.txt with train/ + test/ or mask_train_v2/ + mask_test_v2/ (msmt17)",
    "occluded_body_images/ or partial_body_images/ with whole_body_images/ (occluded-reid, partial-reid)",
    "campus/NNNNCCC.png (cuhk01)",
    "detected/ or labeled/ in the Market layout (cuhk03-np)",
    "bounding_box_train/, query/, bounding_box_test/ (market1501, dukemtmc-reid, occluded-duke)",
)


def detect_source_layout(root: Path) -> str | None:
    """The layout name of ``root`` from its folders, or None when nothing known is there."""
    if manifest_path(root) is not None:
        return "csv"
    if msmt17_version(root) is not None:
        return "msmt17"
    test_only = detect_test_only(root)
    if test_only is not None:
        return test_only
    if is_cuhk01(root):
        return "cuhk01"
    if cuhk03_variants(root):
        return "cuhk03-np"
    if has_market_folders(root):
        return "market1501"  # or Duke / Occluded-Duke: read_market tells them apart
    return None


def read_source(root: str | os.PathLike, layout: str | None = None, variant: str | None = None,
                split_seed: int = 0) -> Source:
    """Parse a dataset folder in any known layout.

    Args:
        root: the dataset folder (``--src``).
        layout: force a layout (one of :data:`LAYOUT_NAMES`); None detects it.
        variant: CUHK03-NP's ``detected`` (default) or ``labeled``; an error for other layouts.
        split_seed: seeds the train/test split of datasets that have no official one (CUHK01).

    Raises:
        BadInputError: an unknown ``layout``, a folder of no known layout (the message lists
            what was looked for), or whatever the reader finds wrong (naming the file).
    """
    root = Path(root)
    forced = layout
    if layout is not None and layout not in LAYOUT_NAMES:
        raise BadInputError(f"--layout {layout!r}: unknown layout; use one of {', '.join(LAYOUT_NAMES)}")
    if layout is None and (root.is_dir() or manifest_path(root) is not None):
        layout = detect_source_layout(root)
        if layout is None:
            _raise_unknown_layout(root)
    if variant is not None and layout != "cuhk03-np":
        raise BadInputError(f"--variant {variant!r}: only CUHK03-NP has variants (this source is {layout or 'unknown'})")
    if layout == "cuhk01":
        return read_cuhk01(root, split_seed)
    if layout == "cuhk03-np":
        return read_cuhk03_np(root, variant)
    if layout == "msmt17":
        return read_msmt17(root)
    if layout in ("occluded-reid", "partial-reid"):
        return read_test_only(root, layout)
    if layout == "csv":
        return read_manifest(root)
    # Market, Duke, Occluded-Duke, and the Market reader's own errors for a missing, empty or
    # half-Market folder (they name the missing split folders).
    return read_market(root, forced)


def _raise_unknown_layout(root: Path) -> None:
    """Raise the most helpful error for a folder in no known layout.

    Some of Market's split folders, or an empty folder: the Market reader's own message says
    what is missing, so this returns. A subfolder in a known layout (the folder an archive
    was unpacked into): "did you mean --src SUB". Else: what detection looked for.
    """
    if any((root / f).is_dir() for f in SPLIT_FOLDERS.values()):
        return
    try:
        subfolders = sorted(e.path for e in os.scandir(root) if e.is_dir())
    except OSError as exc:
        raise BadInputError(f"{root}: cannot list the folder ({exc.strerror}); check its permissions") from exc
    if not subfolders and not any(True for _ in os.scandir(root)):
        return
    nested = [(sub, found) for sub in subfolders if (found := detect_source_layout(Path(sub))) is not None]
    if len(nested) == 1:
        sub, found = nested[0]
        raise BadInputError(f"{root}: no known dataset layout here, but {sub} is {found} "
                            f"(did you mean --src {sub}?)")
    raise BadInputError(f"{root}: no known dataset layout; looked for {'; '.join(_LOOKED_FOR)}. "
                        f"Point --src at the dataset's own folder or force one with --layout")
