"""Tests of reid.metrics.evaluate: hand-computed cases and a per-query reference loop."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from common.errors import BadInputError
from reid.metrics import EvalResult, evaluate

# One gallery for the hand-made cases (row: pid, camera).
G_PIDS = np.array([1, 2, 1, -1, 0, 1, 3])
G_CAMS = np.array([0, 1, 1, 1, 2, 2, 0])

# Queries (pid, camera) and their distances to the 7 gallery rows.
Q_PIDS = np.array([1, 1, 3, 2])
Q_CAMS = np.array([0, 1, 0, 0])
DIST = np.array(
    [
        # q0 (pid 1, cam 0). Ascending: row 3 (0.05, junk: dropped), row 0 (same pid and
        # camera: dropped), row 1 (neg), row 2 (MATCH), row 4 (distractor, neg),
        # row 5 (MATCH), row 6 (neg). Kept ranking: 1, 2, 4, 5, 6 -> matches at ranks 2
        # and 4. First match 2; AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5.
        [0.1, 0.2, 0.3, 0.05, 0.4, 0.5, 0.6],
        # q1 (pid 1, cam 1): all tied, so the order is by gallery row: row 0 (pid 1,
        # cam 0: MATCH), 1 (neg), 2 (same camera: dropped), 3 (junk: dropped), 4 (neg),
        # 5 (MATCH), 6 (neg). Kept: 0, 1, 4, 5, 6 -> matches at ranks 1 and 4.
        # AP = (1/1 + 2/4) / 2 = 0.75; INP = 2 / 4 = 0.5.
        [1.0] * 7,
        # q2 (pid 3, cam 0): the only pid-3 row (6) has the same camera -> no match,
        # skipped.
        [0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 0.0],
        # q3 (pid 2, cam 0): ascending: rows 5 and 6 tie at 0 (5 first), 4 (distractor pid
        # 0: a negative), 3 (junk: dropped), 2, 1 (MATCH), 0. Kept: 5, 6, 4, 2, 1, 0 ->
        # the match is at rank 5. AP = 1/5; INP = 1/5.
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0],
    ]
)
# Valid queries q0, q1, q3 with first matches at ranks 2, 1, 5:
# CMC@1 = 1/3, CMC@2..4 = 2/3, CMC@5 = 1; mAP = (0.5 + 0.75 + 0.2) / 3; mINP = 1.2 / 3.
EXPECTED_CMC = np.array([1 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0], dtype=np.float32)
EXPECTED_MAP = (0.5 + 0.75 + 0.2) / 3
EXPECTED_MINP = (0.5 + 0.5 + 0.2) / 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("chunk_size,workers", [(1, 1), (2, 2), (16, 1)])
def test_hand_made_case(dtype: type, chunk_size: int, workers: int) -> None:
    res = evaluate(
        (DIST * 100).astype(dtype) if dtype is np.int64 else DIST.astype(dtype),
        Q_PIDS,
        G_PIDS,
        Q_CAMS,
        G_CAMS,
        max_rank=5,
        chunk_size=chunk_size,
        num_workers=workers,
    )
    assert isinstance(res, EvalResult)
    np.testing.assert_array_equal(res.cmc, EXPECTED_CMC)
    assert res.cmc.dtype == np.float32
    assert res.mAP == pytest.approx(EXPECTED_MAP, abs=1e-12)
    assert res.mINP == pytest.approx(EXPECTED_MINP, abs=1e-12)
    assert res.num_valid_queries == 3
    assert res.num_skipped_queries == 1
    assert res.rank(1) == pytest.approx(1 / 3)
    assert res.rank(5) == 1.0


def test_tie_is_broken_by_gallery_row_not_by_match() -> None:
    # Query pid 1 cam 0; gallery: row 0 negative, row 1 match, both at distance 0.
    # Row order puts the negative first: the match is at rank 2 (AP 0.5, CMC@1 0).
    # -0.0 and +0.0 compare equal, so they tie as well.
    g_p, g_c, q_p, q_c = np.array([5, 1]), np.array([1, 1]), np.array([1]), np.array([0])
    for row in ([0.0, 0.0], [0.0, -0.0], [-0.0, 0.0]):
        for dtype in (np.float32, np.float64):
            res = evaluate(np.array([row], dtype=dtype), q_p, g_p, q_c, g_c, max_rank=2)
            np.testing.assert_array_equal(res.cmc, [0.0, 1.0])
            assert res.mAP == 0.5 and res.mINP == 0.5
    # Swapping the rows makes the match first.
    res = evaluate(np.zeros((1, 2), np.float32), q_p, g_p[::-1], q_c, g_c, max_rank=2)
    np.testing.assert_array_equal(res.cmc, [1.0, 1.0])
    assert res.mAP == 1.0


def test_negative_distances_are_ordered() -> None:
    # Negated similarities: -3 < -1 < 2. Match (row 2) has -3: rank 1.
    g_p, g_c = np.array([7, 8, 1, 1]), np.array([1, 1, 1, 2])
    d = np.array([[-1.0, 2.0, -3.0, 1.5]])
    # Kept order: row 2 (MATCH, -3), row 0 (-1), row 3 (MATCH, 1.5), row 1 (2).
    # AP = (1/1 + 2/3) / 2; INP = 2/3.
    for dtype in (np.float32, np.float64):
        res = evaluate(d.astype(dtype), np.array([1]), g_p, np.array([0]), g_c, max_rank=4)
        np.testing.assert_array_equal(res.cmc, [1, 1, 1, 1])
        assert res.mAP == pytest.approx((1 + 2 / 3) / 2, abs=1e-12)
        assert res.mINP == pytest.approx(2 / 3, abs=1e-12)


def test_max_rank_larger_than_gallery_uses_gallery_size(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="reid.metrics.protocol"):
        res = evaluate(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=50)
    assert "max_rank 50" in caplog.text
    assert res.cmc.shape == (7,)
    np.testing.assert_array_equal(res.cmc[:5], EXPECTED_CMC)
    np.testing.assert_array_equal(res.cmc[5:], [1.0, 1.0])
    with pytest.raises(BadInputError, match=r"rank: k must be in 1\.\.7, got 8"):
        res.rank(8)
    with pytest.raises(BadInputError, match=r"rank: k must be in 1\.\.7, got 0"):
        res.rank(0)


def test_no_valid_query_raises() -> None:
    with pytest.raises(BadInputError, match="no query has a match in the gallery"):
        evaluate(DIST[2:3], Q_PIDS[2:3], G_PIDS, Q_CAMS[2:3], G_CAMS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((2, 7)), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS), "q_pids/q_camids: expected 2 values"),  # 4 pids, 2 rows
        ((np.zeros((4, 6)), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS), "g_pids/g_camids: expected 6 values"),  # 7 for 6 columns
        ((np.zeros(7), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS), r"distmat: expected shape \[Q, G\], got \(7,\)"),  # not 2-D
        ((DIST, Q_PIDS.astype(float), G_PIDS, Q_CAMS, G_CAMS), "q_pids: expected integers, got dtype float64"),
    ],
)
def test_bad_shapes_raise(args: tuple, message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        evaluate(*args)


def test_nan_raises() -> None:
    d = DIST.copy()
    d[0, 4] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        evaluate(d.astype(np.float32), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)


def _reference(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, float, float, int]:
    """The protocol, one query at a time, written the obvious way."""
    max_rank = min(max_rank, distmat.shape[1])
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        kept = [
            j
            for j in order
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])
        ]
        is_match = [g_pids[j] == q_pids[i] for j in kept]
        ranks = [r + 1 for r, m in enumerate(is_match) if m]  # 1-based
        if not ranks:
            continue
        cmcs.append([1.0 if ranks[0] <= k else 0.0 for k in range(1, max_rank + 1)])
        aps.append(sum((t + 1) / r for t, r in enumerate(ranks)) / len(ranks))
        inps.append(len(ranks) / ranks[-1])
    cmc = np.asarray(cmcs, dtype=np.float32).sum(axis=0) / len(cmcs)
    return cmc, float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_on_random_matrices(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_q, num_g, num_ids = int(rng.integers(5, 40)), int(rng.integers(20, 150)), 8
    q_p = rng.integers(-1, num_ids, num_q)
    g_p = rng.integers(-1, num_ids, num_g)
    q_c = rng.integers(0, 3, num_q)
    g_c = rng.integers(0, 3, num_g)
    # Integer values force many ties (including negatives); continuous ones have none.
    mats = [
        rng.integers(-3, 4, (num_q, num_g)).astype(np.float32),
        rng.integers(0, 3, (num_q, num_g)).astype(np.float64),
        rng.random((num_q, num_g)).astype(np.float32),
        rng.normal(size=(num_q, num_g)),
    ]
    for d in mats:
        try:
            cmc, m_ap, m_inp, n_valid = _reference(d, q_p, g_p, q_c, g_c, 20)
        except ZeroDivisionError:
            continue
        res = evaluate(d, q_p, g_p, q_c, g_c, max_rank=20, chunk_size=int(rng.integers(1, 9)))
        np.testing.assert_array_equal(res.cmc, cmc)
        assert res.mAP == pytest.approx(m_ap, abs=1e-12)
        assert res.mINP == pytest.approx(m_inp, abs=1e-12)
        assert res.num_valid_queries == n_valid
        assert res.num_skipped_queries == num_q - n_valid


def test_larger_random_matrix_against_reference() -> None:
    # Enough rows and matches that chunks, padding and threads all come into play.
    rng = np.random.default_rng(42)
    num_q, num_g = 60, 900
    q_p, g_p = rng.integers(0, 30, num_q), rng.integers(-1, 30, num_g)
    q_c, g_c = rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)
    d = rng.integers(0, 50, (num_q, num_g)).astype(np.float32)
    cmc, m_ap, m_inp, n_valid = _reference(d, q_p, g_p, q_c, g_c, 50)
    res = evaluate(d, q_p, g_p, q_c, g_c, max_rank=50, chunk_size=7, num_workers=2)
    np.testing.assert_array_equal(res.cmc, cmc)
    assert res.mAP == pytest.approx(m_ap, abs=1e-12)
    assert res.mINP == pytest.approx(m_inp, abs=1e-12)
    assert res.num_valid_queries == n_valid
