"""The evaluator: the one place that training-time validation and ``reid eval`` both call.

Pipeline: gallery features once, the features of every query set, a query-by-gallery
distance matrix (:func:`reid.retrieval_distance.combined_distance`), optional k-reciprocal re-ranking
(:func:`reid.metrics.rerank.re_rank`), then the Market-1501 protocol
(:func:`reid.metrics.protocol.evaluate`) per query set.

Which query sets and gallery rows are compared is :mod:`reid.engine.queries`; what is asked
(options, defaults, their checks) is :class:`reid.engine.eval_config.EvalConfig`.

Visibility: for a model with a visibility head (trained with ``--visibility-weight``), the
local part of the distance can be the visibility-weighted aligned distance
(:func:`reid.retrieval_distance.visibility_weighted_aligned_distance`): ``visibility`` "on" uses it,
"off" the plain aligned distance, "both" reports every query set twice (the weighted rows
named ``<set>+vis``), and "auto" (the default) means "on" when the model has the head and the
distance uses local features (``local`` or ``global+local``, without ``--shortlist``), "off"
otherwise. Every row also reports the OBC head's occlusion probability of each query and
their mean, except for a checkpoint whose OBC head was not trained (alpha = 1; see
:mod:`reid.engine.eval_checkpoint`, where :func:`run_eval` loads the checkpoint).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from common.device import resolve_device
from common.errors import BadInputError
from occsim.store import StoreInfo, read_store
from reid.engine.eval_config import EvalConfig, resolve_visibility
from reid.engine.features import DEFAULT_INPUT_SIZE, Features, extract_features
from reid.engine.queries import expand_queries, gallery_rows
from reid.metrics.protocol import evaluate
from reid.retrieval_distance import combined_distance, shortlist_aligned_distance

logger = logging.getLogger(__name__)

#: Appended to a query set's name for its visibility-weighted row under ``visibility="both"``.
VISIBILITY_SUFFIX = "+vis"


@dataclass
class QueryResult:
    """Scores of one query set against the gallery (rates are fractions in [0, 1]).

    Attributes:
        name: the query set ("clean", "occluded:mean", ...).
        r1, r5, r10: CMC at ranks 1, 5, 10 (CMC at the last rank when the curve is shorter).
        mAP, mINP: mean average precision, mean inverse negative penalty.
        num_queries: queries evaluated (with at least one valid gallery match).
        num_skipped: queries without any valid match, left out of every mean.
        cmc: the CMC curve, shape [max_rank] (or [gallery size] when that is smaller).
        visibility: the local distance of this row was visibility-weighted.
        query_rows: the set's rows of the query split, ascending, shape [Q].
        occ_prob: the OBC head's probability that each query (in ``query_rows`` order) is
            occluded, shape [Q]; occ_prob_mean: its mean (None when not extracted, or when
            the head was not trained).
    """

    name: str
    r1: float
    r5: float
    r10: float
    mAP: float
    mINP: float
    num_queries: int
    num_skipped: int
    cmc: np.ndarray = field(repr=False)
    visibility: bool = False
    query_rows: np.ndarray | None = field(default=None, repr=False)
    occ_prob: np.ndarray | None = field(default=None, repr=False)
    occ_prob_mean: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cmc"] = [float(v) for v in self.cmc]
        data["query_rows"] = None if self.query_rows is None else [int(v) for v in self.query_rows]
        data["occ_prob"] = None if self.occ_prob is None else [round(float(v), 6) for v in self.occ_prob]
        return data


@dataclass
class EvalReport:
    """Everything ``reid eval`` prints and writes.

    Attributes:
        rows: one :class:`QueryResult` per query set, in the order asked for.
        gallery: description of the gallery ("clean (N images)" or "all (N images)").
        gallery_size: number of gallery images.
        data: the HDF5 file; data_fingerprint: its fingerprint.
        checkpoint: the checkpoint file (None for an in-memory model, e.g. during training).
        checkpoint_fingerprint: the dataset fingerprint the checkpoint recorded, if any.
        cross_dataset: the checkpoint was trained on another file than ``data`` (the two
            fingerprints differ): e.g. trained on Market-1501, tested on Occluded-REID.
        distance, metric, rerank, flip, max_rank, shortlist, input_size: how it was computed.
        visibility: "on", "off" or "both", as resolved from the asked value (see the module doc).
        obc_head_trained: the checkpoint's OBC head was trained (False: no ``occ_prob``; None: unknown).
    """

    rows: list[QueryResult]
    gallery: str
    gallery_size: int
    data: str
    data_fingerprint: str
    distance: str
    metric: str
    rerank: bool
    flip: bool
    max_rank: int
    input_size: tuple[int, int]
    shortlist: int | None = None
    checkpoint: str | None = None
    checkpoint_fingerprint: str | None = None
    cross_dataset: bool = False
    visibility: str = "off"
    obc_head_trained: bool | None = None

    def row(self, name: str) -> QueryResult:
        """The result of query set ``name``; KeyError when it was not evaluated."""
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows"] = [row.to_dict() for row in self.rows]
        data["input_size"] = list(self.input_size)
        return data

    def to_json(self) -> str:
        """JSON text: the fields of this report, rates as fractions in [0, 1]."""
        return json.dumps(self.to_dict(), indent=2)


# -------------------------------------------------------------------------- distances


def _distance(
    q: Features,
    g: Features,
    distance: str,
    metric: str,
    device: torch.device,
    shortlist: int | None,
    weighted: bool = False,
) -> np.ndarray:
    """Distance matrix between two feature sets, shape [len(q), len(g)] float32; ``weighted``:
    the local part is visibility-weighted (both sets must carry ``visibility``)."""
    if weighted:
        return combined_distance(
            q.global_feat, g.global_feat, q.local_feat, g.local_feat, mode=distance, metric=metric,  # type: ignore[arg-type]
            device=device, q_visibility=q.visibility, g_visibility=g.visibility,
        )
    if shortlist is not None:
        return shortlist_aligned_distance(
            q.global_feat, g.global_feat, q.local_feat, g.local_feat, k=shortlist, metric=metric, device=device
        )  # type: ignore[arg-type]
    return combined_distance(
        q.global_feat, g.global_feat, q.local_feat, g.local_feat, mode=distance, metric=metric, device=device  # type: ignore[arg-type]
    )


def model_has_visibility(model: nn.Module) -> bool:
    """True for a network built with ``ModelConfig.visibility_head`` (DDP/compile wrappers seen through)."""
    from reid.models.checkpoint import unwrap_model

    return bool(getattr(getattr(unwrap_model(model), "config", None), "visibility_head", False))


def _at(cmc: np.ndarray, rank: int) -> float:
    """CMC at ``rank`` (1-based); beyond the curve's end the last value holds."""
    return float(cmc[min(rank, len(cmc)) - 1])


# ---------------------------------------------------------------------------- evaluate


def evaluate_model(
    model: nn.Module,
    data_path: str | Path,
    queries: Sequence[str] = EvalConfig.queries,
    gallery: str = EvalConfig.gallery,
    distance: str = EvalConfig.distance,
    metric: str = EvalConfig.metric,
    rerank: bool = EvalConfig.rerank,
    device: str | torch.device = EvalConfig.device,
    flip: bool = EvalConfig.flip,
    batch_size: int = EvalConfig.batch_size,
    max_rank: int = EvalConfig.max_rank,
    shortlist: int | None = EvalConfig.shortlist,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    amp: bool = EvalConfig.amp,
    workers: int = EvalConfig.workers,
    store: StoreInfo | None = None,
    visibility: str = EvalConfig.visibility,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> EvalReport:
    """Evaluate ``model`` on the query/gallery splits of ``data_path``.

    The model is moved to ``device``; its train/eval mode is restored afterwards, so the
    trainer can call this between epochs.

    Args:
        model: returns :class:`reid.models.aligned.ModelOutput` (global_feat [N, D], local_feat [N, H, C]).
        data_path: the occluded-reid HDF5 file.
        queries, gallery, distance, metric, rerank, flip, batch_size, max_rank, shortlist,
            amp, workers, visibility: see :class:`EvalConfig` (its defaults; checked as it checks them).
        device: "auto", "cpu", "cuda" or a torch.device.
        input_size: (H, W) the images are resized to (the training size).
        store: the already-read file (saves re-reading the manifests); read when None.
        normalization: (mean, std) the model was trained with, from its checkpoint
            (:class:`reid.models.inference.InferenceSpec`); None = ImageNet's, the trainer's.

    Returns:
        an :class:`EvalReport` with one row per expanded query set.

    Raises:
        BadInputError: bad options, query types absent from the file, or a gallery that shares
            no identity (seen from another camera) with a query set.
    """
    EvalConfig(data=Path(data_path), queries=tuple(queries), gallery=gallery, distance=distance, metric=metric,
               rerank=rerank, flip=flip, batch_size=batch_size, max_rank=max_rank, shortlist=shortlist,
               workers=workers, visibility=visibility, amp=amp)  # BadInputError as `reid eval` says it
    visibility = resolve_visibility(visibility, model_has_visibility(model), distance, shortlist)
    weightings = {"on": (True,), "off": (False,), "both": (False, True)}[visibility]
    data_path = Path(data_path)
    store = store if store is not None else read_store(data_path)
    names = expand_queries(queries, store)
    dev = resolve_device(device)
    g_rows = gallery_rows(store, gallery)
    if max_rank > len(g_rows):
        # Clamp once here rather than have the protocol warn once per query set.
        logger.info("max_rank %d exceeds the gallery (%d images); using %d", max_rank, len(g_rows), len(g_rows))
        max_rank = int(len(g_rows))
    q_manifest = store.splits["query"]
    extract: dict[str, Any] = dict(input_size=input_size, batch_size=batch_size, device=dev, flip=flip, amp=amp,
                                   workers=workers)
    if normalization is not None:
        extract.update(mean=tuple(normalization[0]), std=tuple(normalization[1]))

    g_feats = extract_features(model, data_path, "gallery", g_rows, desc=f"gallery ({gallery})", **extract)
    # Query sets are disjoint row selections of one split: extract their union once.
    set_rows = {name: q_manifest.rows(name) for name in names}
    all_q_rows = np.unique(np.concatenate(list(set_rows.values())))
    q_all = extract_features(model, data_path, "query", all_q_rows, desc="queries", **extract)
    g_g = {w: _distance(g_feats, g_feats, distance, metric, dev, shortlist, w) for w in weightings} if rerank else {}

    results: list[QueryResult] = []
    for name in names:
        q_feats = q_all.subset(np.searchsorted(all_q_rows, set_rows[name]))
        shared = np.intersect1d(q_feats.pids, g_feats.pids[g_feats.pids >= 0])
        if len(shared) == 0:
            raise BadInputError(
                f"{data_path}: the {gallery} gallery shares no identity with the {name} queries; "
                "the splits do not belong together, regenerate the file with `occsim generate`"
            )
        for weighted in weightings:
            distmat = _distance(q_feats, g_feats, distance, metric, dev, shortlist, weighted)
            if rerank:
                from reid.metrics.rerank import re_rank

                q_q = _distance(q_feats, q_feats, distance, metric, dev, shortlist, weighted)
                distmat = re_rank(distmat, q_q, g_g[weighted])
            row_name = name + VISIBILITY_SUFFIX if weighted and visibility == "both" else name
            result = _score(row_name, distmat, q_feats, g_feats, max_rank, data_path, gallery)
            result.visibility = weighted
            result.query_rows = q_feats.rows
            result.occ_prob = q_feats.occ_prob
            if q_feats.occ_prob is not None and len(q_feats.occ_prob):
                result.occ_prob_mean = float(np.mean(q_feats.occ_prob))
            results.append(result)
            logger.debug("%s: R1 %.2f%%, mAP %.2f%%", row_name, 100 * result.r1, 100 * result.mAP)

    return EvalReport(
        rows=results,
        gallery=f"{gallery} ({len(g_rows)} images)",
        gallery_size=int(len(g_rows)),
        data=str(data_path),
        data_fingerprint=store.fingerprint,
        distance=distance,
        metric=metric,
        rerank=rerank,
        flip=flip,
        max_rank=max_rank,
        input_size=(int(input_size[0]), int(input_size[1])),
        shortlist=shortlist,
        visibility=visibility,
    )


def _score(
    name: str, distmat: np.ndarray, q: Features, g: Features, max_rank: int, data_path: Path, gallery: str
) -> QueryResult:
    try:
        result = evaluate(distmat, q.pids, g.pids, q.camids, g.camids, max_rank=max_rank)
    except BadInputError as exc:  # e.g. no query with a match from another camera
        raise BadInputError(f"{data_path}: {name} queries against the {gallery} gallery: {exc}") from exc
    cmc = np.asarray(result.cmc, dtype=np.float64)
    return QueryResult(
        name=name,
        r1=_at(cmc, 1),
        r5=_at(cmc, 5),
        r10=_at(cmc, 10),
        mAP=float(result.mAP),
        mINP=float(result.mINP),
        num_queries=int(result.num_valid_queries),
        num_skipped=int(result.num_skipped_queries),
        cmc=cmc,
    )


def run_eval(config: EvalConfig) -> EvalReport:
    """Load ``config.checkpoint`` and evaluate it on ``config.data`` (what ``reid eval`` runs).

    The checkpoint's side (input size, a cross-dataset warning, the fingerprints and
    ``cross_dataset`` in the report, no occlusion probability of an untrained OBC head) is
    :mod:`reid.engine.eval_checkpoint`.
    """
    from reid.engine.eval_checkpoint import load_for_eval, record_checkpoint
    from reid.engine.runs import resolve_checkpoint

    checkpoint_path = resolve_checkpoint(config.checkpoint)
    store = read_store(config.data)
    # Validate the query selection before the (slow) model load, so typos fail fast.
    expand_queries(config.queries, store)
    dev = resolve_device(config.device)
    model, spec, cross_dataset = load_for_eval(checkpoint_path, config.data, store, dev)
    report = evaluate_model(
        model,
        config.data,
        queries=config.queries,
        gallery=config.gallery,
        distance=config.distance,
        metric=config.metric,
        rerank=config.rerank,
        device=dev,
        flip=config.flip,
        batch_size=config.batch_size,
        max_rank=config.max_rank,
        shortlist=config.shortlist,
        input_size=spec.input_size,
        amp=config.amp,
        workers=config.workers,
        store=store,
        visibility=config.visibility,
        normalization=(spec.mean, spec.std),
    )
    record_checkpoint(report, checkpoint_path, spec, cross_dataset)
    return report
