"""What every row of the generated file will be, before any pixel: boxes, passer-by sources, manifests.

Boxes (and the ``pedestrian`` occluder's source rows) depend only on the per-image generator
``numpy.random.default_rng([seed, split_index, clean_row, type_code])``, the stored size and
the split's pids, never on pixels, so :mod:`occsim.generate` plans the whole manifest in its
workers (:func:`plan_boxes`) before it decodes anything, and the bytes do not depend on how
many workers there are.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from occsim.occluders import OCCLUDERS, OccluderParams
from occsim.pedestrian import PEDESTRIAN, SourcePool, check_identities, pedestrian_box, pick_source, source_pool
from occsim.schema import NO_BOX, NO_SOURCE, REAL_OCCLUSION, SPLITS, occ_type_code
from occsim.sources import Source, train_labels
from occsim.store import SplitManifest

#: One chunk's plan: boxes shape [T, n, 4] int16 and source rows shape [T, n] int32 (-1 but
#: for ``pedestrian``), T the split's occluder types, n its clean rows in the chunk.
ChunkPlan = tuple[np.ndarray, np.ndarray]


def plan_boxes(seed: int, split_index: int, start: int, target_pids: Sequence[int], types: tuple[str, ...],
               params: OccluderParams, image_size: tuple[int, int], pool: SourcePool | None = None) -> ChunkPlan:
    """Boxes (and sources) of clean rows ``start .. start+n-1`` of a split for each type.

    Args:
        target_pids: pid of each of the n rows.
        pool: the split's :class:`occsim.pedestrian.SourcePool`; needed when ``types`` has
            ``pedestrian``, whose source is drawn after its box, from the same generator.
    """
    n = len(target_pids)
    boxes = np.empty((len(types), n, 4), dtype=np.int16)
    sources = np.full((len(types), n), NO_SOURCE, dtype=np.int32)
    for t, name in enumerate(types):
        code = occ_type_code(name)
        sample_box = pedestrian_box if name == PEDESTRIAN else OCCLUDERS[name].sample_box
        for i in range(n):
            rng = np.random.default_rng([seed, split_index, start + i, code])
            boxes[t, i] = sample_box(image_size, params, rng)
            if name == PEDESTRIAN:
                assert pool is not None, "a pedestrian plan needs the split's source pool"
                sources[t, i] = pick_source(pool, int(target_pids[i]), rng)
    return boxes, sources


def pedestrian_pools(source: Source, split_types: dict[str, tuple[str, ...]]) -> dict[str, SourcePool | None]:
    """The source pool of each split occluded with ``pedestrian`` (None elsewhere).

    Raises:
        BadInputError: such a split holds a single identity (no passer-by to take).
    """
    pools: dict[str, SourcePool | None] = {}
    for split in SPLITS:
        records = source.splits[split]
        pools[split] = None
        if PEDESTRIAN in split_types[split]:
            pid = np.array([r.pid for r in records], dtype=np.int32)
            check_identities(pid, split, source.root)
            pools[split] = source_pool(pid, np.array([r.occluded for r in records], dtype=bool))
    return pools


def pedestrian_paths(records: Sequence, types: tuple[str, ...], sources: np.ndarray) -> list[str] | None:
    """Source-relative paths of the passers-by of a chunk's rows (``sources`` shape [T, n] from
    :func:`plan_boxes`, ``records`` the split's records); None without ``pedestrian``."""
    if PEDESTRIAN not in types:
        return None
    return [records[int(row)].path for row in sources[types.index(PEDESTRIAN)]]


def build_manifest(split: str, source: Source, types: tuple[str, ...], plans: Sequence[ChunkPlan]) -> SplitManifest:
    """Manifest of ``split``: source rows in source order, then one block per type.

    ``plans`` are the split's chunk plans in row order (none for an empty split). A source
    row that is genuinely occluded (a real occluded benchmark's query) is stored with
    ``occluded`` True, the code ``real`` and box -1s; it is its own ``clean_index`` (there is
    no clean original), and synthetic copies of it point back at it.
    """
    records = source.splits[split]
    n, copies = len(records), 1 + len(types)
    boxes = np.concatenate([np.empty((len(types), 0, 4), dtype=np.int16)] + [b for b, _ in plans], axis=1)
    sources = np.concatenate([np.empty((len(types), 0), dtype=np.int32)] + [s for _, s in plans], axis=1)
    pid = np.array([r.pid for r in records], dtype=np.int32)
    camid = np.array([r.camid for r in records], dtype=np.int16)
    real = np.array([r.occluded for r in records], dtype=np.bool_)
    codes = [0] + [occ_type_code(t) for t in types]
    occ_type = np.repeat(np.array(codes, dtype=np.uint8), n)
    occ_type[:n][real] = occ_type_code(REAL_OCCLUSION)
    return SplitManifest(
        pid=np.tile(pid, copies),
        camid=np.tile(camid, copies),
        occluded=np.concatenate([real, np.ones(n * len(types), dtype=np.bool_)]),
        occ_type=occ_type,
        box=np.concatenate([np.tile(np.array(NO_BOX, dtype=np.int16), (n, 1)), boxes.reshape(-1, 4)]),
        clean_index=np.tile(np.arange(n, dtype=np.int32), copies),
        path=[r.path for r in records] * copies,
        label=np.tile(train_labels(pid), copies) if split == "train" else None,
        occ_source=np.concatenate([np.full(n, NO_SOURCE, dtype=np.int32), sources.reshape(-1)]),
    )
