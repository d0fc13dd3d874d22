"""A PNG grid of clean / occluded pairs for a person to check a generated file by eye."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from common.atomic import check_output
from common.errors import BadInputError
from common.sheets import draw_box, grid, hstack_tiles, labelled, upscale, write_png
from occsim.pedestrian import source_box
from occsim.schema import OCC_TYPE_NAMES
from occsim.store import open_h5, read_images, read_store

logger = logging.getLogger(__name__)

SCALE = 3  # 128x64 crops are too small to judge at 1:1
COLUMNS = 4  # pairs per grid row
_GAP = 6
_BOX_OCCLUDED = (0, 255, 0)  # RGB
_BOX_CLEAN = (255, 210, 0)
_BOX_SOURCE = (255, 0, 255)  # the region a pedestrian row's passer-by was cut from


def _tile(image: np.ndarray, box: np.ndarray, colour: tuple[int, int, int], thickness: int) -> np.ndarray:
    """``image`` (shape [H, W, 3]) scaled up by :data:`SCALE` with ``box`` (x, y, w, h) drawn."""
    return draw_box(upscale(image, SCALE), box, SCALE, colour, thickness)


def write_preview(h5_path: str | os.PathLike, out_png: str | os.PathLike, n: int = 16, seed: int = 0,
                  force: bool = False) -> Path:
    """Write a grid of ``n`` randomly chosen occluded rows beside their clean originals.

    Each cell is the clean image (the hidden box outlined thinly) and its occluded copy (the
    box outlined in green), scaled up 3x, labelled with split, pid, camera and occluder type;
    a ``pedestrian`` row adds a third image, the passer-by's (its pasted region outlined in
    magenta), and a line naming its row and pid.

    Args:
        h5_path: a file made by ``occsim generate``; validated first.
        out_png: where to write; must end in ``.png``.
        n: pairs to show (fewer when the file has fewer occluded rows).
        seed: which rows are picked.
        force: replace an existing ``out_png`` (never ``h5_path``).

    Returns:
        ``out_png`` as a Path.
    """
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise BadInputError(f"{out_png}: the preview is a PNG; give a file name ending in .png")
    if n < 1:
        raise BadInputError(f"--n {n}: must be at least 1")
    check_output(out_png, (h5_path,), force, "preview")
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
            tiles = [_tile(clean, box, _BOX_CLEAN, 1), _tile(occluded, box, _BOX_OCCLUDED, 2)]
            lines = [f"{split} pid {int(manifest.pid[row])} cam {int(manifest.camid[row])} "
                     f"{OCC_TYPE_NAMES[int(manifest.occ_type[row])]}"]
            source = int(manifest.occ_source[row])
            if source >= 0:
                passer_by = read_images(h5, split, [source])[0]
                tiles.append(_tile(passer_by, source_box(tuple(box), info.image_size), _BOX_SOURCE, 1))
                lines.append(f"passer-by: row {source}, pid {int(manifest.pid[source])}")
            cells.append(labelled(hstack_tiles(tiles, _GAP), lines, below=True))

    write_png(out_png, cv2.cvtColor(grid(cells, COLUMNS, _GAP), cv2.COLOR_RGB2BGR), "preview", overwrite=force)
    logger.debug("wrote %s (%d pairs)", out_png, len(cells))
    return out_png
