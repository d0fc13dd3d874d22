"""A PNG grid of clean / occluded pairs for a person to check a generated file by eye."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from occsim.errors import BadInputError
from occsim.schema import OCC_TYPE_NAMES
from occsim.store import open_h5, read_images, read_store

logger = logging.getLogger(__name__)

SCALE = 3  # 128x64 crops are too small to judge at 1:1
COLUMNS = 4  # pairs per grid row
_LABEL_H = 22
_GAP = 6
_BOX_OCCLUDED = (0, 255, 0)  # RGB
_BOX_CLEAN = (255, 210, 0)


def _tile(image: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], thickness: int) -> np.ndarray:
    """``image`` (shape [H, W, 3]) scaled up by :data:`SCALE` with ``box`` (x, y, w, h) drawn."""
    big = cv2.resize(image, (image.shape[1] * SCALE, image.shape[0] * SCALE), interpolation=cv2.INTER_NEAREST)
    x, y, w, h = (int(v) * SCALE for v in box)
    cv2.rectangle(big, (x, y), (x + w - 1, y + h - 1), colour, thickness)
    return big


def _label(text: str, width: int) -> np.ndarray:
    strip = np.full((_LABEL_H, width, 3), 255, dtype=np.uint8)
    cv2.putText(strip, text, (4, _LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def write_preview(h5_path: str | os.PathLike, out_png: str | os.PathLike, n: int = 16, seed: int = 0) -> Path:
    """Write a grid of ``n`` randomly chosen occluded rows beside their clean originals.

    Each cell is the clean image (the hidden box outlined thinly) and its occluded copy (the
    box outlined in green), scaled up 3x, labelled with split, pid, camera and occluder type.

    Args:
        h5_path: a file made by ``occsim generate``; validated first.
        out_png: where to write; must end in ``.png``.
        n: pairs to show (fewer when the file has fewer occluded rows).
        seed: which rows are picked.

    Returns:
        ``out_png`` as a Path.
    """
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise BadInputError(f"{out_png}: the preview is a PNG; give a file name ending in .png")
    if n < 1:
        raise BadInputError(f"--n {n}: must be at least 1")
    info = read_store(h5_path)
    candidates = [(split, int(row)) for split, manifest in info.splits.items() for row in manifest.rows("occluded")]
    if not candidates:
        raise BadInputError(f"{h5_path}: has no occluded rows to preview; generate it with --type and --occlude")
    rng = np.random.default_rng(seed)
    picked = sorted(candidates[i] for i in rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))

    cells = []
    with open_h5(h5_path) as h5:
        for split, row in picked:
            manifest = info.splits[split]
            clean_row = int(manifest.clean_index[row])
            clean, occluded = read_images(h5, split, [clean_row, row])
            box = manifest.box[row]
            pair = np.concatenate([_tile(clean, box, _BOX_CLEAN, 1), np.full((clean.shape[0] * SCALE, _GAP, 3), 255, np.uint8),
                                   _tile(occluded, box, _BOX_OCCLUDED, 2)], axis=1)
            text = (f"{split} pid {int(manifest.pid[row])} cam {int(manifest.camid[row])} "
                    f"{OCC_TYPE_NAMES[int(manifest.occ_type[row])]}")
            cells.append(np.concatenate([pair, _label(text, pair.shape[1])], axis=0))

    cell_h, cell_w = cells[0].shape[:2]
    columns = min(COLUMNS, len(cells))
    rows = -(-len(cells) // columns)
    grid = np.full((rows * (cell_h + _GAP) + _GAP, columns * (cell_w + _GAP) + _GAP, 3), 255, dtype=np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        top, left = _GAP + r * (cell_h + _GAP), _GAP + c * (cell_w + _GAP)
        grid[top : top + cell_h, left : left + cell_w] = cell

    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out_png), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    except (OSError, cv2.error) as exc:
        raise BadInputError(f"{out_png}: cannot write the preview ({exc}); choose another --out") from exc
    if not written:
        raise BadInputError(f"{out_png}: cannot write the preview; choose another --out in a writable folder")
    logger.debug("wrote %s (%d pairs)", out_png, len(cells))
    return out_png
