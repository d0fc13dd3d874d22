"""Query-by-gallery distance matrices for evaluation (``reid eval``, ``rank``, ``study``),
computed in blocks on a device: :func:`combined_distance` (global, aligned local or their sum,
the local part optionally visibility-weighted), :func:`shortlist_aligned_distance` (the
aligned distance only on each query's global top-k) and the visibility-weighted aligned
distance itself. The distances they combine are :mod:`reid.distance`.

The aligned distances here run one in-place dynamic programme over cells laid out
[H, H, pairs] (``_dp_cells_in_place``), the same arithmetic as the fast path of
:func:`reid.distance.aligned_local_distance` (sigmoid form, anti-diagonals).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from common.device import resolve_device
from common.errors import BadInputError
from reid.distance import (
    EPS,
    DistanceMetric,
    aligned_local_distance,
    augment_rows,
    full_precision,
    no_autocast,
    pairwise_distance,
)

DistanceMode = Literal["global", "local", "global+local"]


#: Floor of the visibility probabilities in the weighted aligned distance: a pair whose two
#: images are both predicted fully hidden falls back to equal weights instead of 0 / 0.
VISIBILITY_FLOOR = 1e-3


def visibility_weighted_aligned_distance(
    x: Tensor, y: Tensor, vx: Tensor, vy: Tensor, block_size: int = 128
) -> Tensor:
    """Aligned distance in which stripes that either image shows hidden weigh less.

    For each pair (x_i, y_j), with stripe distances d[a, b] = tanh(||x_i[a] - y_j[b]|| / 2)
    (as :func:`aligned_local_distance`) and the predicted visible probabilities
    p = vx[i] and q = vy[j] (each clamped to at least ``VISIBILITY_FLOOR``):

    * cell weights w[a, b] = p[a] * q[b] (a stripe pair counts fully only when both sides
      predict it visible);
    * the pair's visible mean m = sum_ab w[a, b] d[a, b] / sum_ab w[a, b];
    * cell costs c[a, b] = w[a, b] d[a, b] + (1 - w[a, b]) m;
    * the distance is the cheapest right/down path cost over c from (0, 0) to (H-1, H-1),
      both ends included (the same dynamic programme as the plain aligned distance).

    Why this normalisation: every path still has 2H - 1 cells and every cost is a convex
    combination of values in [0, 1), so distances stay in [0, 2H - 1) and comparable across
    pairs, whatever the visibilities; a hidden cell costs the pair's mean over what both
    images show, so it neither dominates (an occluder's texture against a leg decides
    nothing) nor becomes a free shortcut that would let the path skip the visible stripes
    (as a plain w * d would). With all visibilities 1 (w = 1) it is exactly
    :func:`aligned_local_distance`; it is symmetric when the arguments and visibilities swap.

    Args:
        x: shape [M, H, C]; y: shape [N, H, C].
        vx: shape [M, H], visible probabilities of ``x``'s stripes in [0, 1]; vy: shape [N, H].
        block_size: rows of ``x`` and of ``y`` per block; memory O(block_size^2 * H^2).

    Returns:
        shape [M, N] float32 (float64 for float64 features). No autograd (evaluation only):
        each block's cells are laid out [a, b, pairs] and the dynamic programme runs in place
        along anti-diagonals, as in ``_aligned_rows``.
    """
    if x.dim() != 3 or y.dim() != 3 or x.shape[1:] != y.shape[1:]:
        raise BadInputError(
            f"local features: expected shapes [M, H, C] and [N, H, C], got "
            f"{tuple(x.shape)} and {tuple(y.shape)}; pass stripe features of equal H and C"
        )
    if vx.shape != x.shape[:2] or vy.shape != y.shape[:2]:
        raise BadInputError(
            f"visibility: expected shapes {tuple(x.shape[:2])} and {tuple(y.shape[:2])}, got "
            f"{tuple(vx.shape)} and {tuple(vy.shape)}; pass one probability per stripe"
        )
    if block_size < 1:
        raise BadInputError(f"block_size: must be >= 1, got {block_size}")
    x, y = full_precision(x), full_precision(y)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    m, h, c = x.shape
    n = y.shape[0]
    vx = vx.to(device=x.device, dtype=dtype).clamp(VISIBILITY_FLOOR, 1.0)
    vy = vy.to(device=x.device, dtype=dtype).clamp(VISIBILITY_FLOOR, 1.0)
    out = torch.empty((m, n), dtype=dtype, device=x.device)
    if m == 0 or n == 0:
        return out
    with torch.no_grad(), no_autocast(x):

        def stripe_major(t: Tensor, query_side: bool) -> Tensor:
            """[b, H, C] -> augmented rows [H*b, C+2], row a*b + i = stripe a of item i."""
            return augment_rows(t.to(dtype).transpose(0, 1).reshape(-1, c), query_side)

        g_blocks = [(stripe_major(y[j0 : j0 + block_size], False), vy[j0 : j0 + block_size].t()) for j0 in range(0, n, block_size)]
        for i0 in range(0, m, block_size):
            xb = stripe_major(x[i0 : i0 + block_size], True)
            vxb = vx[i0 : i0 + block_size].t()  # [H, bm]
            bm = vxb.shape[1]
            for jb, (yb, vyb) in enumerate(g_blocks):
                j0, bn = jb * block_size, vyb.shape[1]
                # Squared stripe distances [a, i, b, j] from one product, then s = sigmoid(r):
                # tanh(r / 2) = 2 s - 1, and every cost below is affine in d with the same
                # (2, -1), so the path is computed on s and mapped back once (as reid.distance._aligned_nograd).
                prod = torch.mm(xb, yb.t()).clamp_min_(EPS).sqrt_().sigmoid_()
                cells = prod.view(h, bm, h, bn).permute(0, 2, 1, 3).contiguous()  # [a, b, i, j]
                w = vxb.view(h, 1, bm, 1) * vyb.view(1, h, 1, bn)  # [a, b, i, j]
                # sum_ab w[a, b] = sum_a p[a] * sum_b q[b]
                mean = (w * cells).sum(dim=(0, 1)) / (vxb.sum(dim=0)[:, None] * vyb.sum(dim=0)[None, :])  # [i, j]
                cells.sub_(mean).mul_(w).add_(mean)  # w s + (1 - w) mean(s)
                flat = cells.view(h, h, bm * bn)
                _dp_cells_in_place(flat)
                out[i0 : i0 + bm, j0 : j0 + bn] = flat[h - 1, h - 1].view(bm, bn)
    return out.mul_(2.0).sub_(2 * h - 1)  # back from the sigmoid form


# ------------------------------------------------------------------------ matrices


def combined_distance(
    q_global: Tensor | np.ndarray | None,
    g_global: Tensor | np.ndarray | None,
    q_local: Tensor | np.ndarray | None = None,
    g_local: Tensor | np.ndarray | None = None,
    mode: DistanceMode = "global",
    metric: DistanceMetric = "euclidean",
    device: str | torch.device | None = None,
    block_size: int = 1024,
    q_visibility: Tensor | np.ndarray | None = None,
    g_visibility: Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """Query-by-gallery distance matrix for evaluation, computed in blocks on ``device``.

    Args:
        q_global: shape [M, C]; g_global: shape [N, C] (needed unless mode is "local").
        q_local: shape [M, H, C']; g_local: shape [N, H, C'] (needed unless mode is "global").
        mode: "global" (``metric`` on the global feature), "local" (aligned distance) or
            "global+local" (their sum, as AlignedReID evaluates).
        device: "auto"/None picks CUDA when available.
        block_size: query rows per block (bounds device memory).
        q_visibility: shape [M, H], g_visibility: shape [N, H]: predicted visible
            probabilities of the stripes; when both are given, the local part is
            :func:`visibility_weighted_aligned_distance` instead of the plain aligned distance.

    Returns:
        float32 numpy array of shape [M, N].
    """
    if mode not in ("global", "local", "global+local"):
        raise BadInputError(f"--distance: unknown mode {mode!r}; use global, local or global+local")
    dev = resolve_device(device)
    need_g = mode != "local"
    need_l = mode != "global"
    if need_g and (q_global is None or g_global is None):
        raise BadInputError(f"--distance {mode}: global features are missing")
    if need_l and (q_local is None or g_local is None):
        raise BadInputError(f"--distance {mode}: local features are missing")
    m = int((q_global if need_g else q_local).shape[0])  # type: ignore[union-attr]
    n = int((g_global if need_g else g_local).shape[0])  # type: ignore[union-attr]
    out = np.empty((m, n), dtype=np.float32)
    with torch.no_grad():
        gg = _to(g_global, dev) if need_g else None
        gl = _to(g_local, dev) if need_l else None
        weighted = need_l and q_visibility is not None and g_visibility is not None
        gv = _to(g_visibility, dev) if weighted else None  # type: ignore[arg-type]
        for i0 in range(0, m, block_size):
            i1 = min(m, i0 + block_size)
            acc: Tensor | None = None
            if need_g:
                acc = pairwise_distance(_to(q_global[i0:i1], dev), gg, metric)  # type: ignore[index]
            if weighted:
                loc = visibility_weighted_aligned_distance(
                    _to(q_local[i0:i1], dev), gl, _to(q_visibility[i0:i1], dev), gv  # type: ignore[index,arg-type]
                )
                acc = loc if acc is None else acc + loc
            elif need_l:
                loc = aligned_local_distance(_to(q_local[i0:i1], dev), gl)  # type: ignore[index,arg-type]
                acc = loc if acc is None else acc + loc
            out[i0:i1] = acc.float().cpu().numpy()  # type: ignore[union-attr]
    return out


def shortlist_aligned_distance(
    q_global: Tensor | np.ndarray,
    g_global: Tensor | np.ndarray,
    q_local: Tensor | np.ndarray,
    g_local: Tensor | np.ndarray,
    k: int,
    metric: DistanceMetric = "euclidean",
    device: str | torch.device | None = None,
    block_size: int = 1024,
) -> np.ndarray:
    """global+local distance on each query's top-k gallery rows, global order elsewhere.

    For galleries too large for the full aligned matrix. For query i, let S_i be its k
    gallery rows of smallest global distance (ties: lower row first). Then

    * for j in S_i: out[i, j] = global[i, j] + aligned_local[i, j]  (as ``combined_distance``);
    * otherwise:   out[i, j] = global[i, j] + offset_i, with
      offset_i = max_{j in S_i} (global[i, j] + aligned_local[i, j]) - min_j global[i, j] + 1,

    so every row outside the shortlist ranks after every row inside it, and among
    themselves they keep the global order (a constant shift preserves it, including ties).
    Only k aligned distances per query are computed: cost O(M * k) instead of O(M * N).

    Returns:
        float32 numpy array of shape [M, N].
    """
    if k < 1:
        raise BadInputError(f"--shortlist: k must be >= 1, got {k}")
    dev = resolve_device(device)
    n = int(g_global.shape[0])
    k = min(k, n)
    m = int(q_global.shape[0])
    out = np.empty((m, n), dtype=np.float32)
    with torch.no_grad():
        gg = _to(g_global, dev)
        gl = _to(g_local, dev)
        for i0 in range(0, m, block_size):
            i1 = min(m, i0 + block_size)
            glob = pairwise_distance(_to(q_global[i0:i1], dev), gg, metric)  # [b, N]
            top = smallest_k(glob, k)  # [b, k]
            ql = _to(q_local[i0:i1], dev)  # [b, H, C]
            loc = _aligned_rows(ql, gl, top)  # [b, k]
            short = glob.gather(1, top) + loc
            offset = short.max(dim=1, keepdim=True).values - glob.min(dim=1, keepdim=True).values + 1.0
            res = glob + offset
            res.scatter_(1, top, short)
            out[i0:i1] = res.float().cpu().numpy()
    return out


def smallest_k(dist: Tensor, k: int) -> Tensor:
    """Columns of the k smallest entries of each row of ``dist`` [b, N] -> [b, k], as the
    first k of a stable sort would pick them (ties at the boundary: lower column first),
    in O(N) per row: the k-th smallest value v, every entry below v, then the first
    entries equal to v in column order. The order inside a row is by column."""
    b, n = dist.shape
    if k >= n:
        return torch.arange(n, device=dist.device).expand(b, n)
    kth = torch.kthvalue(dist, k, dim=1, keepdim=True).values  # [b, 1]
    take = dist <= kth
    if bool((take.sum(dim=1) > k).any()):  # ties at the boundary (rare on real data)
        below = dist < kth
        equal = take & ~below
        need = k - below.sum(dim=1, keepdim=True)  # >= 1 entries equal to v to take
        take = below | (equal & (torch.cumsum(equal, dim=1) <= need))
    return take.nonzero()[:, 1].view(b, k)


def _aligned_rows(ql: Tensor, gl: Tensor, idx: Tensor, max_pairs: int = 16384) -> Tensor:
    """Aligned distance of query i with gallery rows idx[i]: ql [b, H, C], idx [b, k] -> [b, k].

    Pairs are processed ``max_pairs`` at a time (the gathered gallery stripes are the
    largest buffer: max_pairs * H * C floats, 64 MiB for H = 8, C = 128). Same arithmetic
    as the fast path of ``aligned_local_distance`` (sigmoid form, in-place anti-diagonal
    programme), on a [H, H, pairs] layout where every cell is one contiguous vector.
    """
    b, k = idx.shape
    h, c = ql.shape[1:]
    q = ql.float()
    out = torch.empty((b, k), dtype=torch.float32, device=ql.device)
    rows = max(1, max_pairs // k)
    for i0 in range(0, b, rows):
        qi = q[i0 : i0 + rows]  # [r, H, C]
        r = qi.shape[0]
        g = gl[idx[i0 : i0 + rows].reshape(-1)].float().view(r, k * h, c)  # [r, k*H, C]
        # squared stripe distances per query: |x|^2 + |y|^2 - 2 x.y, [r, H, k*H]
        sq = torch.baddbmm(
            qi.pow(2).sum(-1, keepdim=True) + g.pow(2).sum(-1).unsqueeze(1),
            qi,
            g.transpose(1, 2),
            alpha=-2.0,
        )
        # [r, a, k, b] -> [a, b, r, k]: cell (a, b) is a contiguous vector of r*k pairs
        cells = sq.view(r, h, k, h).permute(1, 3, 0, 2).contiguous().view(h, h, r * k)
        cells.clamp_min_(EPS).sqrt_().sigmoid_()  # the sigmoid form of reid.distance._aligned_nograd
        _dp_cells_in_place(cells)
        out[i0 : i0 + r] = (cells[h - 1, h - 1] * 2.0 - (2 * h - 1)).view(r, k)
    return out


def _dp_cells_in_place(cells: Tensor) -> None:
    """In-place shortest right/down path over cells [H, H, P]; result in cells[H-1, H-1].

    Anti-diagonal k is the strided view starting at cell (a_lo, k - a_lo) with step
    (H - 1) cells; its up and left neighbours are that view shifted by -H and -1 cells.
    """
    h, _, p = cells.shape
    flat = cells.view(-1)
    tmp = torch.empty((max(h - 1, 1), p), dtype=cells.dtype, device=cells.device)

    def diag(a0: int, b0: int, count: int) -> Tensor:
        return flat.as_strided((count, p), ((h - 1) * p, 1), (a0 * h + b0) * p)

    for k in range(1, 2 * h - 1):
        a_lo, a_hi = max(0, k - h + 1), min(k, h - 1)
        if a_lo == 0:
            cells[0, k].add_(cells[0, k - 1])
        if a_hi == k:
            cells[k, 0].add_(cells[k - 1, 0])
        lo, hi = max(a_lo, 1), min(a_hi, k - 1)
        if hi < lo:
            continue
        n = hi - lo + 1
        t = tmp[:n]
        torch.minimum(diag(lo - 1, k - lo, n), diag(lo, k - lo - 1, n), out=t)
        diag(lo, k - lo, n).add_(t)


def _to(a: Tensor | np.ndarray, dev: torch.device) -> Tensor:
    t = torch.as_tensor(a)
    if t.dtype == torch.float16 or t.dtype == torch.bfloat16:
        t = t.float()
    return t.to(dev)
