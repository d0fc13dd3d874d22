"""Tiles, labels and grids of the PNG figures a person reads: Grad-CAM figures
(:mod:`reid.saliency`), ranked lists (:mod:`reid.rank`, ``reid search``) and the clean /
occluded pairs of ``occsim preview``.

Images are uint8 arrays of shape [H, W, 3]; the helpers are colour-order agnostic (white
background, black text) except :func:`write_png`, which takes BGR as OpenCV does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from common.atomic import atomic_write_bytes

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def write_png(path: str | os.PathLike, image_bgr: np.ndarray, what: str = "figure", overwrite: bool = True) -> Path:
    """Encode a uint8 BGR image (shape [H, W, 3]) as PNG and write it atomically (without
    ``overwrite``: not over an existing file, :func:`common.atomic.commit_file`).

    Raises:
        BadInputError: the file cannot be written there (names ``what`` and ``--out``).
    """
    path = Path(path)
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    atomic_write_bytes(path, buf.tobytes(), what, overwrite=overwrite)
    return path


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor (pixels stay crisp): [H*scale, W*scale, 3]."""
    if scale == 1:
        return image
    return cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def labelled(tile: np.ndarray, lines: Sequence[str], line_height: int = 18, below: bool = False) -> np.ndarray:
    """``tile`` with a white strip above it (``below``: under it) holding ``lines`` of text,
    each shrunk to fit the tile's width."""
    width = tile.shape[1]
    strip = np.full((line_height * len(lines) + 4, width, 3), WHITE, dtype=np.uint8)
    for i, text in enumerate(lines):
        scale = 0.45
        (tw, _), _ = cv2.getTextSize(text, FONT, scale, 1)
        if tw > width - 4:
            scale = max(0.25, scale * (width - 4) / tw)
        cv2.putText(strip, text, (2, line_height * (i + 1) - 4), FONT, scale, BLACK, 1, cv2.LINE_AA)
    return np.vstack([tile, strip] if below else [strip, tile])


def hstack_tiles(tiles: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles side by side on white, ``gap`` px apart, top-aligned (heights may differ)."""
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.full((height, width, 3), WHITE, dtype=np.uint8)
    x = 0
    for t in tiles:
        out[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


def vstack_rows(rows: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Images one below the other on white, ``gap`` px apart, left-aligned."""
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] for r in rows) + gap * (len(rows) - 1)
    out = np.full((height, width, 3), WHITE, dtype=np.uint8)
    y = 0
    for r in rows:
        out[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + gap
    return out


def grid(cells: Sequence[np.ndarray], columns: int, gap: int = 6) -> np.ndarray:
    """``cells`` in rows of ``columns`` (the last may be shorter), ``gap`` px apart and around
    the whole on white."""
    columns = max(1, min(columns, len(cells)))
    rows = [hstack_tiles(cells[i : i + columns], gap) for i in range(0, len(cells), columns)]
    sheet = vstack_rows(rows, gap)
    return cv2.copyMakeBorder(sheet, gap, gap, gap, gap, cv2.BORDER_CONSTANT, value=WHITE)


def draw_box(tile: np.ndarray, box: Sequence[int], scale: int, colour: tuple[int, int, int] = WHITE,
             thickness: int | None = None) -> np.ndarray:
    """A copy of ``tile`` with the stored-pixel box (x, y, w, h) outlined, scaled by ``scale``
    (the tile is the stored image upscaled ``scale`` times); ``thickness`` defaults to
    ``scale // 2 + 1``."""
    out = tile.copy()
    x, y, w, h = (int(v) for v in box)
    thickness = max(1, scale // 2 + 1) if thickness is None else thickness
    cv2.rectangle(out, (x * scale, y * scale), ((x + w) * scale - 1, (y + h) * scale - 1), colour, thickness)
    return out
