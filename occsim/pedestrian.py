"""The ``pedestrian`` occluder: another identity's image pasted where a passer-by would stand.

Most occluders of Occluded-Duke are other people and objects. ``pedestrian`` imitates the
first: a band of the clean image of *another identity of the same split*, pasted over the
target so that it enters the crop from the bottom or from the left or right side. The file
records the box (``box``) and the row of the clean image the pixels came from (``occ_source``).

Drawn from the per-image rng (``numpy.random.default_rng([seed, split_index, clean_row,
type_code])``, as for every occluder), in this order, on the stored H x W image:

1. the edge, uniformly among :data:`EDGES` (:func:`pedestrian_box`);
2. the area fraction ``a``, uniform in [area_min, area_max] (the options the ``random``
   occluder uses): a side band is full height and round(a * W) wide, a bottom band full
   width and round(a * H) high, so the box touches that edge and lies inside the image;
3. the source row (:func:`pick_source`), uniform among the split's clean rows of another
   pid: real identities (pid > 0) that are not genuinely occluded crops; rows of any other
   pid (junk, distractors, real occlusions) only when there is none. Never the same pid.

What is pasted (:func:`source_box`, :func:`paste_region`): the source row's stored image (the
same size as the target; re-ID crops centre their person) is cut at a box of the target box's
size, horizontally centred, at the top. A side band is thus the middle of the passer-by, head
to feet (someone at the edge of the crop, partly outside it), and a bottom band the top of the
source, head and shoulders (someone nearer the camera). Cutting at the box's own place would
show mostly background: a band at the edge of a crop rarely holds its person. Pixels are
copied, not blended.

Boxes and sources depend on the manifest (pids) and the rng only, never on pixels, so the
generator plans them before decoding anything (:mod:`occsim.plan`). Each worker then decodes
a source image itself, from its path, with the decoding that made the stored clean row, so
the pasted pixels equal that row's, workers need nothing from each other and the bytes do
not depend on ``--workers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import BadInputError
from occsim.occluders import Box, OccluderParams

PEDESTRIAN = "pedestrian"
EDGES: tuple[str, ...] = ("bottom", "left", "right")  # where the passer-by enters the crop


def _round(value: float) -> int:
    """Half up (Python's round() goes half to even)."""
    return int(math.floor(value + 0.5))


def edge_band(image_hw: tuple[int, int], edge: str, fraction: float) -> Box:
    """The band along ``edge`` covering about ``fraction`` of the image, (x, y, w, h).

    Args:
        image_hw: (H, W) of the image.
        edge: one of :data:`EDGES`: "bottom" is a full-width band of height round(fraction * H),
            "left"/"right" a full-height band of width round(fraction * W); at least 1 pixel,
            at most the whole side.
        fraction: share of the image in (0, 1].
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    if edge == "bottom":
        h = min(height, max(1, _round(fraction * height)))
        return 0, height - h, width, h
    if edge not in EDGES:
        raise ValueError(f"unknown edge {edge!r}; use one of {', '.join(EDGES)}")
    w = min(width, max(1, _round(fraction * width)))
    return (0 if edge == "left" else width - w), 0, w, height


def pedestrian_box(image_hw: tuple[int, int], params: OccluderParams, rng: np.random.Generator) -> Box:
    """The passer-by's box: an edge (one integer draw), then an area fraction uniform in
    [area_min, area_max] (one float draw); see :func:`edge_band`."""
    edge = EDGES[int(rng.integers(0, len(EDGES)))]
    fraction = float(rng.uniform(params.area_min, params.area_max))
    return edge_band(image_hw, edge, fraction)


def source_box(box: Box, image_hw: tuple[int, int]) -> Box:
    """Where the pasted pixels come from in the source image (of size ``image_hw`` = (H, W)):
    a box of ``box``'s size, horizontally centred (x = (W - w) // 2), at the top (y = 0)."""
    _, _, w, h = box
    return (int(image_hw[1]) - w) // 2, 0, w, h


def paste_region(image: np.ndarray, source: np.ndarray, box: Box, out: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` with ``box`` replaced by the :func:`source_box` region of ``source``.

    Args:
        image: the target, RGB uint8, shape [H, W, 3]; not modified.
        source: the passer-by's clean image, shape [H, W, 3] (the same stored size).
        box: (x, y, w, h) inside the image.
        out: receives the copy when given (the generator passes a scratch row).

    Returns:
        shape [H, W, 3] uint8.
    """
    if source.shape != image.shape:
        raise ValueError(f"source shape {source.shape} differs from the image's {image.shape}")
    if out is None:
        out = image.copy()
    elif out is not image:
        out[...] = image
    x, y, w, h = box
    sx, sy, _, _ = source_box(box, image.shape[:2])
    out[y : y + h, x : x + w] = source[sy : sy + h, sx : sx + w]
    return out


@dataclass(frozen=True)
class SourcePool:
    """The rows a split's passers-by are drawn from, in tiers tried in order.

    Attributes:
        tiers: (pids, rows) pairs, each sorted by (pid, row), shape [m] int32 each: first the
            preferred rows (pid > 0, not a genuinely occluded crop), then every clean row.
    """

    tiers: tuple[tuple[np.ndarray, np.ndarray], ...]


def source_pool(pid: np.ndarray, real: np.ndarray | None = None) -> SourcePool:
    """The pool of a split from its clean rows.

    Args:
        pid: identity of each clean row (rows 0..n-1), shape [n].
        real: True for a genuinely occluded crop of a real benchmark, shape [n]; None = none.
    """
    pid = np.asarray(pid, dtype=np.int32)
    preferred = pid > 0 if real is None else (pid > 0) & ~np.asarray(real, dtype=bool)
    tiers = []
    for mask in (preferred, np.ones(len(pid), dtype=bool)):
        rows = np.flatnonzero(mask).astype(np.int32)
        order = np.lexsort((rows, pid[rows]))
        tiers.append((pid[rows][order], rows[order]))
    return SourcePool(tuple(tiers))


def pick_source(pool: SourcePool, target_pid: int, rng: np.random.Generator) -> int:
    """A row of another identity than ``target_pid``: uniform over the first tier of ``pool``
    that has one (one integer draw); -1 when no row of the split has another pid."""
    for pids, rows in pool.tiers:
        lo, hi = np.searchsorted(pids, target_pid, "left"), np.searchsorted(pids, target_pid, "right")
        others = len(pids) - (hi - lo)
        if others > 0:
            k = int(rng.integers(0, others))
            return int(rows[k if k < lo else k + (hi - lo)])
    return -1


def check_identities(pid: np.ndarray, split: str, root: Path) -> None:
    """Refuse a split whose clean rows (``pid`` shape [n]) hold fewer than two identities: there
    is no passer-by to take. An empty split is fine (it has no row to occlude)."""
    found = sorted(set(np.asarray(pid).tolist()))
    if len(found) == 1:
        raise BadInputError(f"{root}: --type {PEDESTRIAN} pastes another identity, but the {split} split holds only "
                            f"pid {found[0]}; leave {split} out of --occlude or pick another --type")
