"""Ranking figures: a query and its top-k gallery images, green border = match, red = miss.

What is shown is exactly the ranking the CMC sees (the Market-1501 protocol of
:mod:`reid.metrics.protocol`): the gallery sorted by ascending distance with a stable sort
(ties: lower gallery row first), then the rows the protocol *removes* are dropped before the
top k are taken -- gallery images of the query's identity taken by the query's camera, and
junk images (pid -1). So rank r in the figure is rank r of the CMC, and a query whose first
green tile sits at position r counts as a hit for CMC@k exactly when r <= k. A match is a
gallery image of the query's identity (necessarily from another camera, since same-camera
ones were removed); distractors (pid 0) and every other identity are misses.

Figures are uint8 BGR (cv2's order); the borders are :data:`MATCH_COLOUR` and
:data:`MISS_COLOUR`, the query's is :data:`QUERY_COLOUR`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from torch import nn

from common.device import resolve_device
from common.errors import BadInputError
from common.options import option_of
from common.sheets import hstack_tiles, labelled, upscale, vstack_rows, write_png
from occsim.store import open_h5, read_images, read_store
from reid.engine.eval_config import EvalConfig
from reid.engine.features import DEFAULT_INPUT_SIZE, extract_features
from reid.engine.queries import expand_queries, gallery_rows
from reid.retrieval_distance import combined_distance

logger = logging.getLogger(__name__)

#: Border colours, BGR.
MATCH_COLOUR: tuple[int, int, int] = (0, 255, 0)
MISS_COLOUR: tuple[int, int, int] = (0, 0, 255)
QUERY_COLOUR: tuple[int, int, int] = (0, 0, 0)
#: Border of a result whose identity is unknown (``reid search`` on unlabelled crops).
UNKNOWN_COLOUR: tuple[int, int, int] = (160, 160, 160)

RANK_SHEET = "rank_sheet.png"
#: What a run writes into its folder (glob pattern): per-query rows and :data:`RANK_SHEET`.
RANK_OUTPUTS: tuple[str, ...] = ("rank_*.png",)


def protocol_topk(
    dist_row: np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    k: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-k gallery positions of one query as the Market-1501 protocol ranks them.

    Args:
        dist_row: distances from the query to each gallery image, shape [G].
        q_pid, q_camid: the query's identity and camera.
        g_pids, g_camids: the gallery's identities and cameras, shape [G].
        k: how many to return (fewer when fewer remain after removal).

    Returns:
        (indices, is_match): gallery positions in rank order, shape [k'] int64, and whether each
        is a match (same pid; the camera necessarily differs), shape [k'] bool; k' = min(k,
        number of gallery images left after removing same-pid-same-camera and pid -1 rows).
    """
    dist_row = np.asarray(dist_row).reshape(-1)
    g_pids = np.asarray(g_pids).reshape(-1)
    g_camids = np.asarray(g_camids).reshape(-1)
    if not (dist_row.shape == g_pids.shape == g_camids.shape):
        raise ValueError(f"dist_row, g_pids and g_camids must have the same length, got {dist_row.shape}, {g_pids.shape}, {g_camids.shape}")
    order = np.argsort(dist_row, kind="stable")
    removed = ((g_pids[order] == q_pid) & (g_camids[order] == q_camid)) | (g_pids[order] == -1)
    kept = order[~removed][: max(int(k), 0)]
    return kept.astype(np.int64), g_pids[kept] == q_pid


def _bordered(tile: np.ndarray, colour: tuple[int, int, int], width: int) -> np.ndarray:
    return cv2.copyMakeBorder(tile, width, width, width, width, cv2.BORDER_CONSTANT, value=colour)


def rank_figure(
    query_image: np.ndarray,
    gallery_images: np.ndarray | Sequence[np.ndarray],
    is_match: np.ndarray | Sequence[bool] | None,
    query_label: Sequence[str] = ("query",),
    gallery_labels: Sequence[Sequence[str]] | None = None,
    scale: int = 2,
    border: int = 4,
) -> np.ndarray:
    """One row: the query (black border), a gap, then the ranked gallery images, each with a
    green (match) or red (miss) border and a label strip above it.

    Args:
        query_image: uint8 RGB, shape [H, W, 3].
        gallery_images: uint8 RGB, shape [k, H, W, 3], in rank order.
        is_match: shape [k] bool; None when identities are unknown (grey borders).
        query_label: text lines above the query.
        gallery_labels: per gallery image, its text lines (default: the rank, 1-based).
        scale: integer upscaling of every image.
        border: border width in output pixels.

    Returns:
        uint8 BGR image.
    """
    known = is_match is not None
    is_match = np.asarray(is_match if known else [False] * len(gallery_images), dtype=bool).reshape(-1)
    if len(gallery_images) != len(is_match):
        raise ValueError(f"{len(gallery_images)} gallery images but {len(is_match)} match flags")
    if gallery_labels is None:
        gallery_labels = [[f"rank {r + 1}"] for r in range(len(is_match))]
    lines = max([len(query_label), *(len(lbl) for lbl in gallery_labels)])

    def tile(image: np.ndarray, colour: tuple[int, int, int], text: Sequence[str]) -> np.ndarray:
        big = upscale(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR), scale)
        return labelled(_bordered(big, colour, border), list(text) + [""] * (lines - len(text)))

    query_tile = tile(query_image, QUERY_COLOUR, query_label)
    spacer = np.full((query_tile.shape[0], 4 * border, 3), 255, dtype=np.uint8)
    tiles = [query_tile, spacer]
    tiles += [
        tile(img, (MATCH_COLOUR if match else MISS_COLOUR) if known else UNKNOWN_COLOUR, text)
        for img, match, text in zip(gallery_images, is_match, gallery_labels)
    ]
    return hstack_tiles(tiles)


def _select_queries(
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    h5_path: Path,
    query: str,
    n_queries: int,
    ids: Sequence[int] | None,
    seed: int,
) -> np.ndarray:
    """Positions in the query set to draw: the first row of each id, or ``n_queries`` at random among
    the queries the protocol counts (at least one match from another camera), in row order."""
    if ids is not None:
        positions = []
        for pid in ids:
            hits = np.flatnonzero(q_pids == int(pid))
            if hits.size == 0:
                known = sorted(set(int(p) for p in q_pids))
                raise BadInputError(
                    f"{h5_path}: --ids {pid} has no {query} query image; pick from {known[:10]}{' ...' if len(known) > 10 else ''}"
                )
            positions.append(int(hits[0]))
        return np.array(positions, dtype=np.int64)
    if n_queries < 1:
        raise BadInputError(f"--n {n_queries}: must be at least 1")
    valid = np.array(
        [np.any((g_pids == p) & (g_camids != c)) for p, c in zip(q_pids, q_camids)], dtype=bool
    )
    candidates = np.flatnonzero(valid)
    if candidates.size == 0:
        raise BadInputError(f"{h5_path}: no {query} query has a match in the gallery from another camera; regenerate the file")
    chosen = np.random.default_rng(seed).choice(candidates, size=min(n_queries, candidates.size), replace=False)
    return np.sort(chosen).astype(np.int64)


def write_rank_figures(
    model: nn.Module,
    h5_path: str | Path,
    out_dir: str | Path,
    query: str = "clean",
    n_queries: int = 5,
    ids: Sequence[int] | None = None,
    seed: int = 0,
    distance: str = "global",
    metric: str = "euclidean",
    k: int = 10,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    gallery: str = "clean",
    device: str | None = "auto",
    batch_size: int = 64,
    scale: int = 2,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Ranking figures for a few queries of one query set against the gallery.

    Gallery features are extracted once; distances come from
    :func:`reid.retrieval_distance.combined_distance`; ranks from :func:`protocol_topk`.

    Args:
        model: returns a ModelOutput (global_feat, local_feat).
        h5_path: the occluded-reid HDF5 file.
        out_dir: where the PNGs go (created).
        query: query set: "clean", "occluded:<type>" (or "occluded" / "all", their union).
        n_queries: how many queries to draw at random (with ``seed``) among those the protocol
            counts; ignored when ``ids`` is given.
        ids: identities to show instead (the first query row of each in ``query``).
        distance, metric: as ``reid eval`` ("global"/"local"/"global+local"; "euclidean"/"cosine").
        k: gallery images per row.
        input_size: (H, W) the model expects.
        gallery: "clean" (default, the standard setting) or "all".
        normalization: (mean, std) the model was trained with; None = ImageNet's.
        overwrite: replace existing PNGs of these names (else refused, :func:`common.atomic.commit_file`).

    Returns:
        paths of ``rank_q<row>_pid<pid>.png`` per query in the order drawn, then
        :data:`RANK_SHEET` (all rows stacked).

    Raises:
        BadInputError: unknown options, an id without a query image, no query with a match.
    """
    for name, value in (("distance", distance), ("metric", metric)):  # the options of `reid eval`
        option_of(EvalConfig, name).check(name, value)
    if k < 1:
        raise BadInputError(f"--k {k}: must be at least 1")
    h5_path = Path(h5_path)
    out_dir = Path(out_dir)
    store = read_store(h5_path)
    names = expand_queries([query], store)
    manifest = store.splits["query"]
    q_rows_all = np.unique(np.concatenate([manifest.rows(name) for name in names]))
    g_rows = gallery_rows(store, gallery)
    g_manifest = store.splits["gallery"]
    g_pids, g_camids = g_manifest.pid[g_rows], g_manifest.camid[g_rows]

    positions = _select_queries(
        manifest.pid[q_rows_all], manifest.camid[q_rows_all], g_pids, g_camids,
        h5_path, query, n_queries, ids, seed,
    )
    q_rows = q_rows_all[positions]
    dev = resolve_device(device)
    extract: dict[str, Any] = dict(input_size=input_size, batch_size=batch_size, device=dev)
    if normalization is not None:
        extract.update(mean=tuple(normalization[0]), std=tuple(normalization[1]))
    g_feats = extract_features(model, h5_path, "gallery", g_rows, desc="gallery", **extract)
    q_feats = extract_features(model, h5_path, "query", q_rows, desc="queries", **extract)
    distmat = combined_distance(
        q_feats.global_feat, g_feats.global_feat, q_feats.local_feat, g_feats.local_feat,
        mode=distance, metric=metric, device=dev,  # type: ignore[arg-type]
    )

    figures: list[np.ndarray] = []
    paths: list[Path] = []
    with open_h5(h5_path) as h5:
        for i, row in enumerate(q_rows.tolist()):
            q_pid, q_cam = int(manifest.pid[row]), int(manifest.camid[row])
            top, match = protocol_topk(distmat[i], q_pid, q_cam, g_pids, g_camids, k)
            if not match.any():
                logger.info("query row %d (pid %d): no match in the top %d", row, q_pid, k)
            query_image = read_images(h5, "query", [row])[0]
            gallery_images = read_images(h5, "gallery", g_rows[top])
            kind = "clean" if not manifest.occluded[row] else "occluded"
            labels = [[f"{r + 1}: pid {int(g_pids[j])}", f"cam {int(g_camids[j])}  d {distmat[i, j]:.2f}"] for r, j in enumerate(top)]
            figure = rank_figure(
                query_image, gallery_images, match,
                query_label=[f"query ({kind})", f"pid {q_pid} cam {q_cam}"], gallery_labels=labels, scale=scale,
            )
            figures.append(figure)
            paths.append(write_png(out_dir / f"rank_q{row}_pid{q_pid}.png", figure, overwrite=overwrite))
    paths.append(write_png(out_dir / RANK_SHEET, vstack_rows(figures), overwrite=overwrite))
    return paths


def run_rank(
    checkpoint: str | Path,
    data: str | Path,
    out_dir: str | Path,
    query: str = "clean",
    n_queries: int = 5,
    ids: Sequence[int] | None = None,
    seed: int = 0,
    distance: str = "global",
    metric: str = "euclidean",
    k: int = 10,
    gallery: str = "clean",
    device: str | None = "auto",
    batch_size: int = 64,
    overwrite: bool = True,
) -> list[Path]:
    """``reid rank``: load ``checkpoint`` and call :func:`write_rank_figures` at the input size
    the checkpoint records. Returns the PNG paths (per query, then the sheet)."""
    from reid.models.inference import load_inference_model

    # Validate the query set before the model load, so that a typo fails fast.
    expand_queries([query], read_store(data))
    dev = resolve_device(device)
    model, spec = load_inference_model(checkpoint, device=dev)
    return write_rank_figures(
        model, data, out_dir, query=query, n_queries=n_queries, ids=ids, seed=seed, distance=distance,
        metric=metric, k=k, input_size=spec.input_size, gallery=gallery, device=dev,
        batch_size=batch_size, normalization=(spec.mean, spec.std), overwrite=overwrite,
    )
