"""``reid search``: the top-k gallery rows of each query, by exact search in blocks.

The gallery (a features file, possibly larger than memory) is read once, ``block_rows`` rows
at a time; each block's distances to a block of queries are computed on the device
(:func:`reid.distance.pairwise_distance`, plus :func:`reid.distance.aligned_local_distance`
for ``global+local``), its k smallest per query kept, and merged with the best so far. Memory
holds one gallery block, one [queries x block] distance block and the [M, k] results, never
the [M, N] matrix. Ranks are those of a stable sort of each query's whole row (ties: lower
gallery row first), the order ``reid eval`` and ``reid rank`` use; the Euclidean ranking is
computed from ``|g|^2 - 2 q.g`` (see :func:`search_topk`), equal to theirs up to float rounding.

Each query's occlusion probability is reported (JSON, sheet) only when the checkpoint's OBC
head was trained: for an alpha = 1 checkpoint (the features file's ``obc_head_trained`` False)
the JSON holds ``"occlusion": null``, the sheet says "OBC head untrained" and one log line why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import atomic_write_json, check_output_folder
from common.device import resolve_device
from common.errors import BadInputError
from common.options import option_of
from reid.distance import aligned_local_distance, pairwise_distance
from reid.inference.config import SearchConfig
from reid.inference.features_file import FeaturesFile
from reid.inference.images import H5_SUFFIXES, list_images
from reid.retrieval_distance import smallest_k

logger = logging.getLogger(__name__)

RESULTS_JSON = "search.json"
SEARCH_SHEET = "search_sheet.png"
#: What a run writes into its folder (glob patterns): the overwrite policy checks these names.
SEARCH_OUTPUTS: tuple[str, ...] = (RESULTS_JSON, "query_*.png", SEARCH_SHEET)
#: Elements of one distance block or one gallery block (2**25 float32 = 128 MiB).
BLOCK_ELEMENTS = 1 << 25
#: Size (H, W) of every tile of the figures, before ``scale``.
TILE_SIZE: tuple[int, int] = (128, 64)
#: The query label of the sheet in place of the probability of an untrained OBC head.
UNTRAINED_LABEL = "OBC head untrained"


class Gallery(Protocol):
    """Rows of gallery features read on demand (a :class:`FeaturesFile`, or :class:`ArrayGallery`)."""

    def __len__(self) -> int: ...
    def global_rows(self, start: int, stop: int) -> np.ndarray: ...
    def local_rows(self, start: int, stop: int) -> np.ndarray: ...


@dataclass
class ArrayGallery:
    """In-memory gallery: global [N, D] and optionally local [N, H, C] (numpy or torch)."""

    global_feat: Any
    local_feat: Any = None

    def __len__(self) -> int:
        return int(self.global_feat.shape[0])

    def global_rows(self, start: int, stop: int) -> Any:
        return self.global_feat[start:stop]

    def local_rows(self, start: int, stop: int) -> Any:
        return self.local_feat[start:stop]


@dataclass
class TopK:
    """Search results: ``distances`` float32 [M, k] ascending and ``indices`` int64 [M, k]
    (gallery rows), k = min(top, gallery rows)."""

    distances: np.ndarray
    indices: np.ndarray


def default_block_rows(num_queries: int, dim: int) -> int:
    """Gallery rows per block: the distance block [queries, rows] and the gallery block
    [rows, D] each stay within :data:`BLOCK_ELEMENTS`; at least 1,024 rows."""
    return max(1024, BLOCK_ELEMENTS // max(1, num_queries, dim))


def search_topk(
    q_global: np.ndarray | torch.Tensor,
    gallery: Gallery,
    top: int = SearchConfig.top,
    distance: str = SearchConfig.distance,
    metric: str = SearchConfig.metric,
    q_local: np.ndarray | torch.Tensor | None = None,
    device: str | torch.device | None = "auto",
    block_rows: int | None = None,
    query_block: int = 4096,
    progress: bool = True,
) -> TopK:
    """Exact top-``top`` gallery rows of every query, streaming the gallery in blocks.

    Ranking uses a per-query *score* that orders the gallery exactly as the distance does,
    and costs one matrix product per block and nothing else of size [queries, rows] besides
    a partial selection: Euclidean: ``|g|^2 - 2 q.g`` (the distance squared minus the
    query's own ``|q|^2``); cosine and ``global+local``: the distance itself. The
    distances of the k kept rows are computed from their scores at the end
    (``sqrt(max(|q|^2 + score, 1e-12))``, as :func:`reid.distance.euclidean_distance`).

    Args:
        q_global: query global features, shape [M, D].
        gallery: gallery rows (``global_rows(a, b)`` [b - a, D]; ``local_rows`` [b - a, H, C]
            for ``global+local``).
        top: results per query.
        distance: "global" (``metric`` on the global feature) or "global+local" (plus the
            aligned local distance, as ``reid eval --distance global+local``).
        metric: "euclidean" or "cosine".
        q_local: query stripe features [M, H, C] (``global+local`` only).
        device: where the distances are computed ("auto": CUDA when available).
        block_rows: gallery rows per block (default :func:`default_block_rows`).
        query_block: queries per distance block.

    Returns:
        :class:`TopK`: the first k columns of a stable sort of each query's scores over the
        whole gallery (ties: lower gallery row first), with their distances.
    """
    for name, value in (("distance", distance), ("metric", metric), ("top", top)):  # as SearchConfig checks them
        option_of(SearchConfig, name).check(name, value)
    if distance == "global+local" and q_local is None:
        raise BadInputError("--distance global+local: the queries have no local features; embed them without --no-local")
    dev = resolve_device(device)
    q = torch.as_tensor(q_global).float().to(dev)
    ql = torch.as_tensor(q_local).float().to(dev) if distance == "global+local" else None
    plain = distance == "global"
    if plain and metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1, eps=1e-12)
    m, n = q.shape[0], len(gallery)
    k = min(top, n)
    rows = block_rows or default_block_rows(min(m, query_block), q.shape[1])
    best_s = torch.full((m, k), float("inf"), device=dev)
    best_i = torch.full((m, k), -1, dtype=torch.int64, device=dev)
    one = torch.ones(1, 1, device=dev)
    with torch.no_grad(), tqdm(total=n, desc="search", unit="row", disable=None if progress else True, leave=False) as bar:
        for g0 in range(0, n, rows):
            g1 = min(n, g0 + rows)
            gg = torch.as_tensor(gallery.global_rows(g0, g1)).float().to(dev)
            gl = torch.as_tensor(gallery.local_rows(g0, g1)).float().to(dev) if ql is not None else None
            if plain and metric == "euclidean":
                g_sq = gg.pow(2).sum(dim=1).unsqueeze(0)  # [1, b]
            elif plain:
                gg = torch.nn.functional.normalize(gg, dim=1, eps=1e-12)
            for q0 in range(0, m, query_block):
                q1 = min(m, q0 + query_block)
                if plain and metric == "euclidean":
                    scores = torch.addmm(g_sq, q[q0:q1], gg.t(), beta=1.0, alpha=-2.0)  # [mq, b]
                elif plain:
                    scores = torch.addmm(one, q[q0:q1], gg.t(), beta=1.0, alpha=-1.0)  # 1 - cos, as cosine_distance
                else:
                    scores = pairwise_distance(q[q0:q1], gg, metric) + aligned_local_distance(ql[q0:q1], gl)  # type: ignore[index]
                vals, cols = _block_topk(scores, min(k, g1 - g0))
                # Best-so-far first (all of lower rows), then this block in (score, row) order:
                # a stable sort by score then breaks every tie by the lower gallery row.
                cand_s = torch.cat([best_s[q0:q1], vals], dim=1)
                cand_i = torch.cat([best_i[q0:q1], cols + g0], dim=1)
                order = torch.sort(cand_s, dim=1, stable=True).indices[:, :k]
                best_s[q0:q1] = cand_s.gather(1, order)
                best_i[q0:q1] = cand_i.gather(1, order)
            bar.update(g1 - g0)
        if plain and metric == "euclidean":
            best_s = (q.pow(2).sum(dim=1, keepdim=True) + best_s).clamp_(min=1e-12).sqrt_()
    return TopK(distances=best_s.cpu().numpy(), indices=best_i.cpu().numpy())


def _block_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k smallest scores of each row of [b, N] and their columns, ordered by (score,
    column), chosen as a stable sort would choose them (ties at the k-th value: lower
    columns). ``torch.topk`` is a partial selection (O(N)); the rare rows with a tie at the
    boundary go through :func:`reid.retrieval_distance.smallest_k`."""
    vals, cols = torch.topk(scores, k, dim=1, largest=False, sorted=False)
    kth = vals.max(dim=1, keepdim=True).values
    tied = ((scores <= kth).sum(dim=1) > k).nonzero().flatten()
    if tied.numel():
        cols[tied] = smallest_k(scores[tied], k)
        vals[tied] = scores[tied].gather(1, cols[tied])
    cols, order = cols.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, stable=True)
    return vals, cols.gather(1, order)


# ---------------------------------------------------------------------------- queries


@dataclass
class Queries:
    """Query features and where they came from: ``names`` [M] (paths relative to ``root``),
    ``occlusion`` [M] (OBC probability), ``pids`` [M] when the source was an .h5 file;
    ``obc_head_trained`` as the checkpoint that embedded them says (a features file's attribute,
    the embedder's :class:`InferenceSpec`): False means ``occlusion`` is no probability."""

    names: list[str]
    global_feat: np.ndarray
    local_feat: np.ndarray | None
    occlusion: np.ndarray
    root: Path
    kind: str
    pids: np.ndarray | None = None
    obc_head_trained: bool | None = None


def load_queries(query: str | Path, gallery: FeaturesFile, checkpoint: str | Path | None, device: str,
                 need_local: bool, batch_size: int = 64) -> Queries:
    """Queries from a features file (same checkpoint as the gallery) or from images (an image,
    folder or list, embedded now with the gallery's checkpoint and ``flip`` setting).

    Raises:
        BadInputError: features of another checkpoint, a checkpoint whose bytes differ from the
            gallery's, an unreadable query image.
    """
    from reid.inference.embedder import Embedder
    from reid.models.inference import file_fingerprint

    query = Path(query)
    if query.is_file() and query.suffix.lower() in H5_SUFFIXES and _is_features_file(query):
        with FeaturesFile(query) as qf:
            if qf.checkpoint_fingerprint != gallery.checkpoint_fingerprint:
                raise BadInputError(
                    f"{query}: embedded with another checkpoint than {gallery.path} (fingerprints "
                    f"{qf.checkpoint_fingerprint[:12]} and {gallery.checkpoint_fingerprint[:12]}); embed both with the same one"
                )
            if need_local and not qf.has_local:
                raise BadInputError(f"{query}: no local features; embed it without --no-local for --distance global+local")
            return Queries(
                names=qf.paths, global_feat=qf.global_rows(0, len(qf)),
                local_feat=qf.local_rows(0, len(qf)) if need_local else None, occlusion=qf.occlusion,
                root=Path(qf.source), kind=qf.source_kind, pids=qf.pids, obc_head_trained=qf.obc_head_trained,
            )
    checkpoint = Path(checkpoint) if checkpoint is not None else Path(gallery.checkpoint)
    if not checkpoint.is_file():
        raise BadInputError(f"{checkpoint}: the gallery's checkpoint is not there; pass --checkpoint with the one it was embedded with")
    if file_fingerprint(checkpoint) != gallery.checkpoint_fingerprint:
        raise BadInputError(
            f"{checkpoint}: not the checkpoint {gallery.path} was embedded with (fingerprint "
            f"{gallery.checkpoint_fingerprint[:12]}); pass that one with --checkpoint, or embed the gallery again"
        )
    listing = list_images(query)
    embedder = Embedder(checkpoint, device=device, batch_size=batch_size, flip=bool(gallery.h5.attrs.get("flip", False)))
    if listing.kind == "h5":
        raise BadInputError(f"{query}: an occluded-reid file; embed it with `reid embed --src {query}` and pass the features file")
    out = embedder.embed(list(listing.files))
    return Queries(names=list(listing.names), global_feat=out.global_feat, local_feat=out.local_feat if need_local else None,
                   occlusion=out.occlusion, root=listing.root, kind=listing.kind,
                   obc_head_trained=embedder.spec.obc_head_trained)


def _is_features_file(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            fmt = h5.attrs.get("format", "")
    except OSError:
        return False
    from reid.inference.features_file import FEATURES_FORMAT

    return (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) == FEATURES_FORMAT


# ---------------------------------------------------------------------------- figures


class _ImageReader:
    """Pixels of a features file's rows from its source (files, or an .h5 file's split/row),
    at :data:`TILE_SIZE`; a grey tile when the image is gone."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = Path(root), kind
        self._h5: Any = None

    def __call__(self, name: str) -> np.ndarray:
        from reid.inference.images import decode_file, fit_to_input

        if self.kind == "h5":
            from occsim.store import open_h5, read_images

            try:
                if self._h5 is None:
                    self._h5 = open_h5(self.root)
                split, row = name.split("/")
                return fit_to_input(read_images(self._h5, split, [int(row)])[0], TILE_SIZE)
            except (BadInputError, KeyError, ValueError, OSError):
                return np.full((*TILE_SIZE, 3), 128, np.uint8)
        if self.kind == "image":
            file = str(self.root)
        elif self.kind == "list":
            file = name if os.path.isabs(name) else str(self.root.parent / name)
        else:
            file = str(self.root / name)
        image, _ = decode_file(file, TILE_SIZE)
        return image if image is not None else np.full((*TILE_SIZE, 3), 128, np.uint8)

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()


def search_figure(queries: Queries, i: int, gallery: FeaturesFile, result: TopK, read_query: _ImageReader,
                  read_gallery: _ImageReader, scale: int = 2) -> np.ndarray:
    """One row of the sheet: query i (its occlusion probability printed, or
    :data:`UNTRAINED_LABEL`) and its top-k gallery images with their distances; borders
    green/red when both sides know identities (.h5 sources), grey otherwise."""
    from reid.rank import rank_figure

    top = result.indices[i]
    is_match = None
    if queries.pids is not None and gallery.pids is not None:
        is_match = gallery.pids[top] == queries.pids[i]
    labels = [[f"{r + 1}: d {result.distances[i, r]:.3f}", _short(gallery.paths[j])] for r, j in enumerate(top)]
    return rank_figure(
        read_query(queries.names[i]), [read_gallery(gallery.paths[j]) for j in top], is_match,
        query_label=[_short(queries.names[i]), _occlusion_label(queries, i)],
        gallery_labels=labels, scale=scale,
    )


def _occlusion_label(queries: Queries, i: int) -> str:
    """Query i's line under its name on the sheet."""
    if queries.obc_head_trained is False:
        return UNTRAINED_LABEL
    return f"occluded p={queries.occlusion[i]:.2f}"


def _occlusion_value(queries: Queries, i: int) -> float | None:
    """Query i's occlusion probability for the JSON: None when the head was not trained."""
    return None if queries.obc_head_trained is False else float(queries.occlusion[i])


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


# -------------------------------------------------------------------------------- run


@dataclass
class SearchReport:
    """What ``run_search`` wrote; ``top`` the first (path, distance) results of each of the first
    :data:`PRINTED_QUERIES` queries, as (query, results) pairs, for the command to print."""

    json_path: Path
    figures: list[Path]
    num_queries: int
    top: list[tuple[str, list[tuple[str, float]]]] = field(default_factory=list)


#: How many queries, and results of each, ``reid search`` prints (the JSON has them all).
PRINTED_QUERIES, PRINTED_RESULTS = 10, 3


def run_search(config: SearchConfig) -> SearchReport:
    """Search ``config.gallery`` for every query; write :data:`RESULTS_JSON`, one PNG row for
    each of the first ``config.figures`` queries and :data:`SEARCH_SHEET` into ``config.out``.

    Raises:
        BadInputError: bad options, files or images (see :func:`load_queries`), an output
            folder that cannot be written or holds an earlier run's results (without
            ``force``), checked before any computation.
    """
    from common.sheets import vstack_rows, write_png

    out = Path(config.out)
    overwrite = config.force
    check_output_folder(out, "search results", outputs=SEARCH_OUTPUTS, force=overwrite,
                        inputs=(config.gallery, config.query, config.checkpoint))
    need_local = config.distance == "global+local"
    with FeaturesFile(config.gallery) as gallery:
        if need_local and not gallery.has_local:
            raise BadInputError(f"{config.gallery}: no local features; embed it without --no-local for --distance global+local")
        queries = load_queries(config.query, gallery, config.checkpoint, config.device, need_local, config.batch_size)
        if queries.global_feat.shape[1] != gallery.global_dim:
            raise BadInputError(f"{config.query}: {queries.global_feat.shape[1]}-d features, the gallery's are {gallery.global_dim}-d")
        if queries.obc_head_trained is False:
            logger.info("%s: its OBC head was not trained (alpha = 1), so no occlusion probability is reported",
                        gallery.checkpoint or config.gallery)
        result = search_topk(queries.global_feat, gallery, config.top, config.distance, config.metric,
                             q_local=queries.local_feat, device=config.device, block_rows=config.block_rows)
        payload = {
            "gallery": str(gallery.path), "gallery_rows": len(gallery), "gallery_source": gallery.source,
            "checkpoint_fingerprint": gallery.checkpoint_fingerprint, "distance": config.distance,
            "metric": config.metric, "top": config.top, "obc_head_trained": queries.obc_head_trained,
            "queries": [
                {
                    "query": name, "occlusion": _occlusion_value(queries, i),
                    "results": [
                        {"rank": r + 1, "path": gallery.paths[j], "row": int(j), "distance": float(result.distances[i, r]),
                         **({"pid": int(gallery.pids[j])} if gallery.pids is not None else {})}
                        for r, j in enumerate(result.indices[i].tolist())
                    ],
                }
                for i, name in enumerate(queries.names)
            ],
        }
        json_path = atomic_write_json(out / RESULTS_JSON, payload, what="search results", overwrite=overwrite,
                                      allow_nan=False)
        figures: list[Path] = []
        rows = []
        read_query, read_gallery = _ImageReader(queries.root, queries.kind), _ImageReader(Path(gallery.source), gallery.source_kind)
        try:
            for i in range(min(config.figures, len(queries.names))):
                rows.append(search_figure(queries, i, gallery, result, read_query, read_gallery))
                figures.append(write_png(out / f"query_{i:04d}.png", rows[-1], overwrite=overwrite))
        finally:
            read_query.close()
            read_gallery.close()
        if rows:
            figures.append(write_png(out / SEARCH_SHEET, vstack_rows(rows), overwrite=overwrite))
    top = [(q["query"], [(r["path"], r["distance"]) for r in q["results"][:PRINTED_RESULTS]])
           for q in payload["queries"][:PRINTED_QUERIES]]
    return SearchReport(json_path=json_path, figures=figures, num_queries=len(queries.names), top=top)


__all__: Sequence[str] = ("ArrayGallery", "TopK", "search_topk", "run_search", "load_queries")
