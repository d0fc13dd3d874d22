"""Tests of reid.metrics.re_rank (k-reciprocal re-ranking)."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import BadInputError
from reid.metrics import re_rank


def _split(points: np.ndarray, num_q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Euclidean distances of the first num_q points (queries) and the rest (gallery)."""
    d = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    return d[:num_q, num_q:], d[:num_q, :num_q], d[num_q:, num_q:]


def _reference(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lam: float
) -> np.ndarray:
    """The algorithm of Zhong et al. on dense matrices, one row at a time (stable ranks)."""
    num_q = q_g.shape[0]
    full = np.block([[q_q, q_g], [q_g.T, g_g]])
    od = (full**2).astype(np.float32)
    od = (od / od.max(axis=0)).T
    n = od.shape[0]
    rank = np.argsort(od, axis=1, kind="stable")

    def recip(i: int, k: int) -> list[int]:
        return [int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]]

    v = np.zeros((n, n), dtype=np.float32)
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        r_i = recip(i, k1)
        expanded = set(r_i)
        for c in r_i:
            r_c = recip(c, half)
            if len(set(r_c) & set(r_i)) > 2.0 / 3.0 * len(r_c):
                expanded |= set(r_c)
        idx = np.array(sorted(expanded))
        w = np.exp(-od[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.zeros((num_q, n), dtype=np.float32)
    for i in range(num_q):
        s = np.minimum(v[i][None, :], v).sum(axis=1)
        jac[i] = 1 - s / (2 - s)
    return (jac * (1 - lam) + od[:num_q] * lam)[:, num_q:]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (5, 3, 0.5), (3, 1, 0.0), (4, 2, 0.8)])
def test_matches_dense_reference(seed: int, k1: int, k2: int, lam: float) -> None:
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(3, 12)), int(rng.integers(10, 50))
    # Clustered points so that reciprocal neighbourhoods are not empty.
    centres = rng.normal(size=(5, 4)) * 3
    pts = centres[rng.integers(0, 5, num_q + num_g)] + rng.normal(size=(num_q + num_g, 4))
    qg, qq, gg = _split(pts, num_q)
    out = re_rank(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam, block_rows=7)
    assert out.shape == (num_q, num_g) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(qg, qq, gg, k1, k2, lam), atol=2e-6, rtol=0)


def test_lambda_one_is_the_normalised_original_distance() -> None:
    rng = np.random.default_rng(5)
    qg, qq, gg = _split(rng.normal(size=(30, 3)), 6)
    out = re_rank(qg, qq, gg, lambda_value=1.0)
    # Squared distances divided by the largest squared distance from that query to any
    # query or gallery row (the column maximum of the stacked matrix).
    m = np.maximum((qq**2).max(axis=0), (qg**2).max(axis=1))
    np.testing.assert_allclose(out, qg**2 / m[:, None], rtol=1e-6)


def test_reciprocal_neighbour_becomes_closer() -> None:
    # On a line: query q at 0; gallery a at -1.05 (isolated) and b at 1.0 followed by a
    # dense run c_i = 1 + 0.1 i. With k1 = 3, q's 4 nearest are q, b, a, c_1 and a's are
    # a, q, b, c_1: q and a are 3-reciprocal. b's 4 nearest are b, c_1, c_2, c_3: q is not
    # among them. Originally b (1.0) is closer than a (1.05); after re-ranking a is.
    pts = np.array([0.0, -1.05, 1.0] + [1.0 + 0.1 * i for i in range(1, 9)])[:, None]
    qg, qq, gg = _split(pts, 1)
    assert qg[0, 1] < qg[0, 0]
    out = re_rank(qg, qq, gg, k1=3, k2=1, lambda_value=0.3)
    assert out[0, 0] < out[0, 1]


def test_bad_inputs() -> None:
    qg, qq, gg = _split(np.random.default_rng(0).normal(size=(8, 2)), 3)
    with pytest.raises(BadInputError, match=r"q_q_dist: expected shape \(3, 3\), got \(2, 3\)"):
        re_rank(qg, qq[:2], gg)
    with pytest.raises(BadInputError, match=r"g_g_dist: expected shape \(5, 5\), got \(5, 3\)"):
        re_rank(qg, qq, gg[:, :3])
    with pytest.raises(BadInputError, match="k1 and k2 must be >= 1, got k1=0"):
        re_rank(qg, qq, gg, k1=0)
    with pytest.raises(BadInputError, match=r"lambda must be in \[0, 1\], got 1\.5"):
        re_rank(qg, qq, gg, lambda_value=1.5)
