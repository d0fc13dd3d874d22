"""Carve a validation file out of the training identities of an occluded-reid file.

Model selection (the alpha sweep, early stopping) must never look at the test split. The
validation file holds the same schema: its ``train`` split keeps the remaining training
identities (relabelled 0..P'-1), and its ``query``/``gallery`` splits are built from the
held-out identities the way Market-1501 builds its test split: per identity and camera the
first clean image is a query (with its occluded copies), the rest are the gallery (clean).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import check_output
from common.errors import BadInputError
from occsim.store import SplitManifest, StoreWriter, open_h5, read_images, read_store, verify_pixels

logger = logging.getLogger(__name__)

COPY_CHUNK = 256


def _subset(manifest: SplitManifest, rows: np.ndarray, relabel: bool) -> SplitManifest:
    """Rows of ``manifest`` (clean rows first, as the schema requires), clean_index and
    occ_source remapped (a passer-by whose row is not kept becomes -1: not in this split).

    Args:
        rows: row indices into ``manifest``, shape [n]; every occluded row's clean row included.
    """
    rows = np.concatenate([rows[~manifest.occluded[rows]], rows[manifest.occluded[rows]]])
    new_index = np.full(len(manifest), -1, dtype=np.int64)
    new_index[rows] = np.arange(len(rows))
    clean_index = new_index[manifest.clean_index[rows]]
    assert (clean_index >= 0).all(), "an occluded row lost its clean original"
    source = manifest.occ_source[rows]
    occ_source = np.where(source >= 0, new_index[np.maximum(source, 0)], -1)
    label = None
    if relabel:
        pids = manifest.pid[rows]
        label = np.searchsorted(np.unique(pids), pids)
    return SplitManifest(
        pid=manifest.pid[rows], camid=manifest.camid[rows], occluded=manifest.occluded[rows],
        occ_type=manifest.occ_type[rows], box=manifest.box[rows], clean_index=clean_index,
        path=[manifest.path[r] for r in rows], label=label, occ_source=occ_source,
    ), rows


def split_identities(manifest: SplitManifest, fraction: float, seed: int,
                     option: str = "--fraction") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose held-out identities and their query/gallery rows (``option`` names ``fraction`` in errors).

    Returns:
        (train_rows, query_rows, gallery_rows): row indices into ``manifest``; query rows
        include the occluded copies of the chosen clean queries, gallery rows are clean.
    """
    pids = np.unique(manifest.pid)
    n_held = int(round(len(pids) * fraction))
    if not 0 < n_held < len(pids) - 1:
        raise BadInputError(f"{option} {fraction}: holds out {n_held} of {len(pids)} identities; "
                            "choose a fraction that keeps at least one identity on each side")
    held = np.sort(np.random.default_rng(seed).choice(pids, size=n_held, replace=False))
    is_held = np.isin(manifest.pid, held)
    clean = ~manifest.occluded
    query_clean: list[int] = []
    gallery: list[int] = []
    for pid in held:
        rows = np.flatnonzero((manifest.pid == pid) & clean)
        firsts = {}
        for row in rows:
            firsts.setdefault(int(manifest.camid[row]), int(row))
        rest = [int(r) for r in rows if int(r) not in firsts.values()]
        for cam, row in firsts.items():
            # A query needs a gallery image of its identity from another camera.
            if any(int(manifest.camid[g]) != cam for g in rest):
                query_clean.append(row)
            else:
                rest.append(row)
        gallery.extend(sorted(rest))
    query_clean_arr = np.asarray(sorted(query_clean), dtype=np.int64)
    copies = np.flatnonzero(manifest.occluded & np.isin(manifest.clean_index, query_clean_arr))
    query_rows = np.concatenate([query_clean_arr, copies])
    return np.flatnonzero(~is_held), query_rows, np.asarray(gallery, dtype=np.int64)


def carve_validation(src: Path, out: Path, fraction: float = 0.2, seed: int = 0, force: bool = False,
                     option: str = "--fraction") -> Path:
    """Write ``out``: a validation file carved from the train split of ``src``.

    Args:
        src: an occluded-reid file.
        out: the validation file to write (atomically).
        fraction: share of the training identities held out for validation.
        seed: chooses the held-out identities.
        force: overwrite an existing ``out`` (never ``src``).
        option: the command-line option that set ``fraction``, named in errors.

    Returns:
        ``out``.
    """
    check_output(out, (src,), force, "validation file")
    info = read_store(src)
    verify_pixels(src)  # a damaged source is refused before anything is written
    train = info.split("train")
    train_rows, query_rows, gallery_rows = split_identities(train, fraction, seed, option)
    if len(query_rows) == 0:
        raise BadInputError(f"{src}: the held-out identities have no image pairs across cameras; raise {option}")
    parts = {
        "train": _subset(train, train_rows, relabel=True),
        "query": _subset(train, query_rows, relabel=False),
        "gallery": _subset(train, gallery_rows, relabel=False),
    }
    args = {"carved_from": info.fingerprint, "val_fraction": fraction, "val_seed": seed}
    with open_h5(src) as h5, StoreWriter(out, info.image_size, force=force) as writer:
        for split, (manifest, rows) in parts.items():
            writer.add_split(split, manifest)
            for start in tqdm(range(0, len(rows), COPY_CHUNK), desc=f"validation {split}", disable=None, leave=False):
                writer.write_images(split, start, read_images(h5, "train", rows[start : start + COPY_CHUNK]))
        writer.finish(source=f"{info.source}-validation", seed=info.seed, generator_args={**info.generator_args, **args})
    logger.info("validation file %s: %d train / %d query / %d gallery rows", out,
                len(parts["train"][0]), len(parts["query"][0]), len(parts["gallery"][0]))
    return out
