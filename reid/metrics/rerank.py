"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded.

Computes the same quantity as the widely used reference implementation (Luo Hao's, as
modified by Houjing Huang and shipped in torchreid as ``re_ranking``), which works on the
full (Q+G) x (Q+G) matrices: the squared, column-max-normalised distances, their full
argsort, the dense encoding matrix V and its query expansion -- about 4 such matrices,
~6 GB for Market-1501 (Q+G = 19281). Here:

* the normalised distance matrix is never held whole: it is produced in blocks of rows,
  each block giving its rows' top-K neighbours (K = max(k1 + 1, k2)) and its column maxima,
  then dropped (a block is ``block_rows`` x (Q+G) float32);
* only the first K ranks are kept (an int32 [Q+G, K] array), selected with a partition
  and ordered by (distance, index), i.e. as a stable sort (the reference's quicksort
  leaves exactly tied distances in arbitrary order: the one place the two can differ);
* the encodings V and their query expansion are sparse (a few hundred non-zeros a row);
* the Jaccard distance is computed for query rows against gallery columns only.

Peak extra memory: the [Q, G] float32 output, one block (block_rows * (Q+G) * 12 bytes),
the sparse V (about (Q+G) * k2 * 60 * 8 bytes) and a few [Q+G, K] index arrays: about
0.5 GB for Market-1501, against ~6 GB for the reference. The inputs themselves (including
the [G, G] gallery matrix, 1 GB in float32 for Market) belong to the caller.

Numbers follow the reference's float32 arithmetic: d^2 cast to float32, divided by the
maximum of its column (of the full (Q+G) matrix), weights exp(-d) normalised to sum 1 in
float32, final = (1 - lambda) * jaccard + lambda * normalised original distance. So with
``lambda_value=1`` the result is q_g_dist^2 / m_i with m_i the largest squared distance
from query i to any query or gallery row (the column max of the stacked matrix).
"""

from __future__ import annotations

import logging

import numpy as np

from common.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["re_rank"]


def re_rank(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    block_rows: int = 512,
) -> np.ndarray:
    """Re-rank a query-by-gallery distance matrix with k-reciprocal encoding.

    Args:
        q_g_dist: shape [Q, G], query-gallery distances.
        q_q_dist: shape [Q, Q], query-query distances (symmetric).
        g_g_dist: shape [G, G], gallery-gallery distances (symmetric).
        k1: size of the k-reciprocal neighbourhood (paper: 20).
        k2: neighbours averaged in the query expansion (paper: 6; 1 disables it).
        lambda_value: weight of the original distance (paper: 0.3).
        block_rows: rows of the (Q+G)-wide normalised matrix held at a time.

    Returns:
        float32 array of shape [Q, G]; smaller is closer.
    """
    qg, qq, gg = (np.asarray(a) for a in (q_g_dist, q_q_dist, g_g_dist))
    _check(qg, qq, gg, k1, k2, lambda_value, block_rows)
    num_q, num_g = qg.shape
    n = num_q + num_g
    sq_dtype = np.result_type(qg.dtype, qq.dtype, gg.dtype, np.float32)
    kk = min(n, max(k1 + 1, k2))

    # Pass 1: for every row i of the normalised matrix od (od[i, j] = D[j, i]^2 / m_i with
    # m_i the maximum of column i of D^2, D the stacked symmetric matrix), its column max
    # and its first kk neighbours in (distance, index) order.
    top = np.empty((n, kk), dtype=np.int64)
    colmax = np.empty(n, dtype=np.float32)
    for i0 in range(0, n, block_rows):
        i1 = min(n, i0 + block_rows)
        blk = _od_rows(qg, qq, gg, i0, i1, sq_dtype, colmax)
        top[i0:i1] = _stable_topk(blk, kk)
        del blk

    # k-reciprocal sets R(i, k1) and R(i, round(k1 / 2)), as padded index arrays.
    r_full, r_full_ok = _reciprocal(top, k1 + 1)
    kh = int(np.around(k1 / 2.0))
    r_half, r_half_ok = _reciprocal(top, kh + 1)

    # Encodings V (sparse rows): expansion sets, weights exp(-od) normalised in float32.
    v = _encodings(r_full, r_full_ok, r_half, r_half_ok, qg, qq, gg, colmax, sq_dtype)
    if k2 != 1:
        v = _query_expansion(v, top[:, :k2])

    jac = _jaccard(v, num_q, num_g)  # [Q, G] float32
    # final = (1 - lambda) * jaccard + lambda * od[:Q, Q:]
    lam = np.float32(lambda_value)
    jac *= np.float32(1.0) - lam
    od_qg = (qg.astype(sq_dtype, copy=False) ** 2).astype(np.float32)
    od_qg /= colmax[:num_q, None]
    od_qg *= lam
    jac += od_qg
    return jac


def _check(
    qg: np.ndarray, qq: np.ndarray, gg: np.ndarray, k1: int, k2: int, lam: float, block_rows: int
) -> None:
    if qg.ndim != 2:
        raise BadInputError(f"q_g_dist: expected shape [Q, G], got {qg.shape}")
    num_q, num_g = qg.shape
    if qq.shape != (num_q, num_q):
        raise BadInputError(f"q_q_dist: expected shape {(num_q, num_q)}, got {qq.shape}")
    if gg.shape != (num_g, num_g):
        raise BadInputError(f"g_g_dist: expected shape {(num_g, num_g)}, got {gg.shape}")
    if num_q == 0 or num_g == 0:
        raise BadInputError("re-ranking: needs at least one query and one gallery row")
    if k1 < 1 or k2 < 1:
        raise BadInputError(f"re-ranking: k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lam <= 1.0:
        raise BadInputError(f"re-ranking: lambda must be in [0, 1], got {lam}")
    if block_rows < 1:
        raise BadInputError(f"re-ranking: block_rows must be >= 1, got {block_rows}")


def _od_rows(
    qg: np.ndarray,
    qq: np.ndarray,
    gg: np.ndarray,
    i0: int,
    i1: int,
    sq_dtype: np.dtype,
    colmax: np.ndarray,
) -> np.ndarray:
    """Rows i0..i1 of the normalised matrix: column i of D^2 / its max, float32 [i1-i0, Q+G].

    Column i of D is [qq[:, i], qg[i, :]] for a query i and [qg[:, i'], gg[:, i']] for
    gallery row i' = i - Q. Also writes colmax[i0:i1].
    """
    num_q = qg.shape[0]
    parts = []
    if i0 < num_q:
        a, b = i0, min(i1, num_q)
        parts.append(np.concatenate([qq[:, a:b].T, qg[a:b, :]], axis=1))
    if i1 > num_q:
        a, b = max(i0, num_q) - num_q, i1 - num_q
        parts.append(np.concatenate([qg[:, a:b].T, gg[:, a:b].T], axis=1))
    col = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    blk = (col.astype(sq_dtype, copy=False) ** 2).astype(np.float32)
    m = blk.max(axis=1)
    colmax[i0:i1] = m
    blk /= m[:, None]
    return blk


def _stable_topk(blk: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest entries of each row, ordered by (value, index).

    Partition finds each row's k-th smallest value v; every entry <= v is a candidate
    (more than k when v is tied), and a lexicographic sort of the candidates keeps the
    first k -- the same as the first k of a stable argsort. blk: [b, N] -> [b, k] int64.
    """
    b, n = blk.shape
    if k >= n:
        return np.argsort(blk, axis=1, kind="stable")[:, :k]
    kth = np.partition(blk, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(blk <= kth[:, None])
    order = np.lexsort((cols, blk[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(rows, np.arange(b))
    pos = np.arange(rows.size) - start[rows]
    keep = pos < k
    out = np.empty((b, k), dtype=np.int64)
    out[rows[keep], pos[keep]] = cols[keep]
    return out


def _reciprocal(top: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k-reciprocal neighbours: j in the first k of i and i in the first k of j.

    Returns (idx, ok), both [N, k]: idx[i] are i's first k neighbours, ok marks those
    that are reciprocal (in i's neighbour order, as the reference lists them).
    """
    n = top.shape[0]
    k = min(k, top.shape[1])
    fwd = top[:, :k]
    ok = np.empty((n, k), dtype=bool)
    step = max(1, (1 << 22) // (k * k))
    for i0 in range(0, n, step):
        f = fwd[i0 : i0 + step]
        back = top[f, :k]  # [b, k, k]
        me = np.arange(i0, i0 + f.shape[0])[:, None, None]
        ok[i0 : i0 + step] = (back == me).any(axis=2)
    return fwd, ok


def _encodings(
    r_full: np.ndarray,
    r_full_ok: np.ndarray,
    r_half: np.ndarray,
    r_half_ok: np.ndarray,
    qg: np.ndarray,
    qq: np.ndarray,
    gg: np.ndarray,
    colmax: np.ndarray,
    sq_dtype: np.dtype,
) -> _Sparse:
    """Sparse V [N, N] float32: row i = softmax-like weights on i's expanded set.

    Expanded set of i: R(i, k1) united with every R(c, k1/2), c in R(i, k1), that shares
    more than 2/3 of its members with R(i, k1). Weights exp(-od[i, j]) / sum, float32.
    """
    n, k = r_full.shape
    kh = r_half.shape[1]
    half_len = r_half_ok.sum(axis=1)  # |R(c, k1/2)|
    rows_all: list[np.ndarray] = []
    cols_all: list[np.ndarray] = []
    step = max(1, (1 << 21) // (k * kh * k))
    for i0 in range(0, n, step):
        i1 = min(n, i0 + step)
        rf = np.where(r_full_ok[i0:i1], r_full[i0:i1], -1)  # [b, k], -1 = not a member
        cand = r_full[i0:i1]  # candidates c (only the reciprocal ones count)
        ch = r_half[cand]  # [b, k, kh] members of R(c, k1/2)
        ch_ok = r_half_ok[cand]
        # |R(c, k1/2) & R(i, k1)|: members of the half set found among i's reciprocal set
        inter = ((ch[..., None] == rf[:, None, None, :]).any(axis=3) & ch_ok).sum(axis=2)
        take = r_full_ok[i0:i1] & (inter > (2.0 / 3.0) * half_len[cand])  # [b, k]
        members = np.concatenate(
            [rf, np.where(take[..., None] & ch_ok, ch, -1).reshape(i1 - i0, -1)], axis=1
        )
        members.sort(axis=1)
        dup = np.zeros_like(members, dtype=bool)
        dup[:, 1:] = members[:, 1:] == members[:, :-1]
        valid = (members >= 0) & ~dup
        r, c = np.nonzero(valid)
        rows_all.append(r + i0)
        cols_all.append(members[r, c])
    rows = np.concatenate(rows_all)
    cols = np.concatenate(cols_all)
    od = _od_at(rows, cols, qg, qq, gg, colmax, sq_dtype)
    w = np.exp(-od)  # float32, as the reference
    sums = np.zeros(n, dtype=np.float32)
    np.add.at(sums, rows, w)
    w /= sums[rows]
    return _Sparse.from_sorted_rows(rows, cols, w, n)


def _od_at(
    rows: np.ndarray,
    cols: np.ndarray,
    qg: np.ndarray,
    qq: np.ndarray,
    gg: np.ndarray,
    colmax: np.ndarray,
    sq_dtype: np.dtype,
) -> np.ndarray:
    """od[i, j] = D[j, i]^2 / colmax[i] (float32) at the given (i, j) pairs."""
    num_q = qg.shape[0]
    d = np.empty(rows.size, dtype=sq_dtype)
    jq, iq = cols < num_q, rows < num_q
    for mask, get in (
        (jq & iq, lambda j, i: qq[j, i]),
        (jq & ~iq, lambda j, i: qg[j, i - num_q]),
        (~jq & iq, lambda j, i: qg[i, j - num_q]),
        (~jq & ~iq, lambda j, i: gg[j - num_q, i - num_q]),
    ):
        d[mask] = get(cols[mask], rows[mask])
    od = (d**2).astype(np.float32)
    od /= colmax[rows]
    return od


def _query_expansion(v: _Sparse, nbrs: np.ndarray) -> _Sparse:
    """V_qe[i] = mean of V[r] over r in nbrs[i] (shape [N, k2]), summed in float32 in
    neighbour order (as the reference's mean over the stacked rows)."""
    n, k2 = nbrs.shape
    counts = np.diff(v.indptr)
    src = nbrs.reshape(-1)  # row r contributes to target i, in neighbour order
    seg_len = counts[src]
    total = int(seg_len.sum())
    target = np.repeat(np.repeat(np.arange(n), k2), seg_len)
    starts = np.repeat(v.indptr[src] - np.concatenate([[0], np.cumsum(seg_len)[:-1]]), seg_len)
    pos = starts + np.arange(total)
    cols, vals = v.indices[pos], v.data[pos]
    key = target * n + cols
    order = np.argsort(key, kind="stable")  # stable: keeps the neighbour order within a key
    key, vals = key[order], vals[order]
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    summed = np.add.reduceat(vals, first) if total else vals
    summed = summed / np.float32(k2)
    ukey = key[first]
    return _Sparse.from_sorted_rows(ukey // n, ukey % n, summed.astype(np.float32), n)


def _jaccard(v: _Sparse, num_q: int, num_g: int) -> np.ndarray:
    """1 - s / (2 - s) with s[i, g] = sum_k min(V[i, k], V[Q + g, k]): [Q, G] float32."""
    # Inverted index of the gallery rows (the reference's invIndex): by column k, the
    # gallery rows g with V[Q + g, k] != 0 and those values.
    lo = v.indptr[num_q]
    g_rows = np.repeat(np.arange(num_g), np.diff(v.indptr[num_q:]))
    g_cols, g_vals = v.indices[lo:], v.data[lo:]
    order = np.argsort(g_cols, kind="stable")
    g_rows, g_vals = g_rows[order], g_vals[order]
    col_ptr = np.searchsorted(g_cols[order], np.arange(v.n + 1))
    out = np.empty((num_q, num_g), dtype=np.float32)
    for i in range(num_q):
        a, b = v.indptr[i], v.indptr[i + 1]
        ks, vals = v.indices[a:b], v.data[a:b]
        seg = col_ptr[ks + 1] - col_ptr[ks]
        total = int(seg.sum())
        if total:
            pos = np.repeat(col_ptr[ks] - np.concatenate([[0], np.cumsum(seg)[:-1]]), seg)
            pos += np.arange(total)
            clipped = np.minimum(g_vals[pos], np.repeat(vals, seg))
            s = np.bincount(g_rows[pos], weights=clipped, minlength=num_g).astype(np.float32)
        else:
            s = np.zeros(num_g, dtype=np.float32)
        out[i] = np.float32(1.0) - s / (np.float32(2.0) - s)
    return out


class _Sparse:
    """Minimal CSR matrix [n, n] (numpy only: scipy is not a runtime dependency)."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int) -> None:
        self.indptr, self.indices, self.data, self.n = indptr, indices, data, n

    @classmethod
    def from_sorted_rows(
        cls, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int
    ) -> _Sparse:
        """From entries already sorted by row (columns ascending within a row)."""
        indptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        return cls(indptr, cols.astype(np.int64), vals.astype(np.float32), n)
