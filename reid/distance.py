"""Pairwise distances between re-identification features: global (Euclidean, cosine) and
AlignedReID's aligned local distance, computed in blocks so that memory stays bounded.

Conventions: the first argument holds M rows (queries, or a training batch), the second N
rows (gallery); every matrix returned has shape [M, N] and row i, column j compares x[i]
with y[j].

Two code paths for the aligned distance:

* with autograd (any input requires grad, as in training on a 64 x 64 batch): plain,
  out-of-place torch operations, so gradients flow through the stripe distances and the
  ``min`` of the dynamic programme (the gradient follows the chosen path);
* without autograd (evaluation, millions of pairs): one matrix product per block produces
  squared stripe distances directly (augmented features, see ``_augment``), then clamp,
  sqrt and sigmoid run in place (tanh(r/2) = 2 sigmoid(r) - 1, see ``_aligned_nograd``),
  and the dynamic programme runs in place along anti-diagonals of the H x H grid on
  strided views, so a block needs no buffer besides the product itself. On the 2-core
  CPU this is about 1.6x the bare matrix product of all query stripes by all gallery
  stripes (benchmarks/bench_aligned_distance.py).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from common.device import resolve_device
from common.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "euclidean_distance",
    "cosine_distance",
    "stripe_distance",
    "aligned_local_distance",
    "visibility_weighted_aligned_distance",
    "pairwise_distance",
    "combined_distance",
    "shortlist_aligned_distance",
]

# Squared distances are clamped here before the square root: d sqrt(s)/ds = 1/(2 sqrt(s))
# is infinite at s = 0 (a pair compared with itself), which would turn gradients into NaN.
_EPS = 1e-12

DistanceMetric = Literal["euclidean", "cosine"]
DistanceMode = Literal["global", "local", "global+local"]


# --------------------------------------------------------------------------- global


def euclidean_distance(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distance between every row of ``x`` and every row of ``y``.

    Args:
        x: shape [M, C].
        y: shape [N, C].

    Returns:
        shape [M, N]: sqrt(max(||x_i||^2 + ||y_j||^2 - 2 x_i.y_j, 1e-12)). Differentiable
        (the clamp keeps the gradient finite where two rows coincide), so the value of a
        row against itself is 1e-6, not 0. Half-precision inputs are computed in float32
        even under autocast: in float16 the clamp at 1e-12 would round to 0 and the
        gradient of the square root there is infinite.
    """
    _check_2d(x, y)
    x, y = _full_precision(x), _full_precision(y)
    with _no_autocast(x):
        xx = x.pow(2).sum(dim=1, keepdim=True)  # [M, 1]
        yy = y.pow(2).sum(dim=1, keepdim=True).t()  # [1, N]
        sq = torch.addmm(xx + yy, x, y.t(), beta=1.0, alpha=-2.0)
        return sq.clamp(min=_EPS).sqrt()


def cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    """1 - cosine similarity between every row of ``x`` [M, C] and of ``y`` [N, C].

    Returns shape [M, N], values in [0, 2]. Zero rows are treated as having norm 1e-12
    (their similarity with anything is 0, distance 1) instead of producing NaN.
    """
    _check_2d(x, y)
    x, y = _full_precision(x), _full_precision(y)
    with _no_autocast(x):
        xn = torch.nn.functional.normalize(x, p=2.0, dim=1, eps=_EPS)
        yn = torch.nn.functional.normalize(y, p=2.0, dim=1, eps=_EPS)
        return 1.0 - xn @ yn.t()


def _full_precision(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (differentiable cast); other dtypes unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _no_autocast(t: Tensor) -> torch.autocast:
    """Context that keeps autocast from lowering the precision of the ops inside."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _check_2d(x: Tensor, y: Tensor) -> None:
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise BadInputError(
            f"features: expected shapes [M, C] and [N, C], got {tuple(x.shape)} and "
            f"{tuple(y.shape)}; pass 2-D feature matrices of the same width"
        )


# ---------------------------------------------------------------------------- local


def stripe_distance(x: Tensor) -> Tensor:
    """AlignedReID's stripe distance (e^x - 1) / (e^x + 1) of an L2 distance ``x`` >= 0.

    This equals tanh(x / 2); tanh is used because e^x overflows float32 for x > 88 (giving
    inf / inf = NaN) and loses precision near 0, where tanh stays exact and bounded in [0, 1).
    Any shape; differentiable.
    """
    return torch.tanh(0.5 * x)


def aligned_local_distance(x: Tensor, y: Tensor, block_size: int | None = None) -> Tensor:
    """AlignedReID's aligned distance between local (stripe) features.

    For each pair (x_i, y_j): the stripe distances d[a, b] = tanh(||x_i[a] - y_j[b]|| / 2)
    for all H x H stripe pairs, then the cost of the cheapest path from (0, 0) to
    (H-1, H-1) moving only down (a + 1) or right (b + 1), summing d over every cell of the
    path, both ends included. Symmetric in its two arguments. Not zero on identical inputs
    (for H > 1): a path has 2H - 1 cells, at most H of them on the diagonal, so distances
    between different stripes of the same image always count.

    Args:
        x: shape [M, H, C].
        y: shape [N, H, C], same H and C; same device as ``x``.
        block_size: pairs are processed in blocks of ``block_size`` rows of ``x`` by
            ``block_size`` rows of ``y``; memory is O(block_size^2 * H^2) besides the
            output. None picks a size for the device (192 x 192 on CPU for H = 8; on CUDA
            512 query rows by a gallery width that keeps the buffer near 256 MiB, see
            ``_block_shape``).

    Returns:
        shape [M, N], float64 for float64 inputs, else float32 (half-precision inputs
        are computed in float32, also under autocast). Differentiable when autograd is
        recording and an input requires grad.
    """
    if x.dim() != 3 or y.dim() != 3 or x.shape[1:] != y.shape[1:]:
        raise BadInputError(
            f"local features: expected shapes [M, H, C] and [N, H, C], got "
            f"{tuple(x.shape)} and {tuple(y.shape)}; pass stripe features of equal H and C"
        )
    if block_size is not None and block_size < 1:
        raise BadInputError(f"block_size: must be >= 1, got {block_size}")
    if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
        x, y = _full_precision(x), _full_precision(y)
        with _no_autocast(x):
            return _aligned_autograd(x, y, block_size or 128)
    with torch.no_grad(), _no_autocast(x):
        return _aligned_nograd(x, y, block_size)


def _aligned_autograd(x: Tensor, y: Tensor, block_size: int) -> Tensor:
    """Differentiable aligned distance, out-of-place, blocked over rows of ``x`` and ``y``."""
    m, h, c = x.shape
    n = y.shape[0]
    rows = []
    for i0 in range(0, m, block_size):
        xb = x[i0 : i0 + block_size]
        cols = []
        for j0 in range(0, n, block_size):
            yb = y[j0 : j0 + block_size]
            # [bm*H, bn*H] -> [bm, H, bn, H] -> [bm, bn, H, H]
            dist = euclidean_distance(xb.reshape(-1, c), yb.reshape(-1, c))
            d = stripe_distance(dist).view(xb.shape[0], h, yb.shape[0], h).permute(0, 2, 1, 3)
            cols.append(_dp_out_of_place(d))
        rows.append(torch.cat(cols, dim=1))
    return torch.cat(rows, dim=0)


def _dp_out_of_place(d: Tensor) -> Tensor:
    """Shortest right/down path cost over the last two dims of ``d`` [..., H, H] -> [...]."""
    h = d.shape[-1]
    prev: list[Tensor] = []  # dp of the previous row, one tensor per column
    for a in range(h):
        cur: list[Tensor] = []
        for b in range(h):
            if a == 0 and b == 0:
                v = d[..., 0, 0]
            elif a == 0:
                v = cur[b - 1] + d[..., 0, b]
            elif b == 0:
                v = prev[0] + d[..., a, 0]
            else:
                v = torch.minimum(prev[b], cur[b - 1]) + d[..., a, b]
            cur.append(v)
        prev = cur
    return prev[-1]


def _augment(x: Tensor, query_side: bool) -> Tensor:
    """Append two columns so that one product of augmented rows is a squared distance.

    With x' = [x, |x|^2, 1] and y' = [-2 y, 1, |y|^2], x'.y' = |x|^2 + |y|^2 - 2 x.y =
    ||x - y||^2, so the product needs no separate pass to add the norms (two extra columns
    cost about 1% of the product).
    x: shape [R, C] -> [R, C + 2].
    """
    sq = x.pow(2).sum(dim=1, keepdim=True)
    ones = torch.ones_like(sq)
    if query_side:
        return torch.cat([x, sq, ones], dim=1)
    return torch.cat([x.mul(-2.0), ones, sq], dim=1)


def _aligned_nograd(x: Tensor, y: Tensor, block_size: int | None) -> Tensor:
    """Aligned distance without autograd: in-place dynamic programme on strided views."""
    out_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    work = torch.float64 if out_dtype == torch.float64 else torch.float32
    m, h, c = x.shape
    n = y.shape[0]
    out = torch.empty((m, n), dtype=out_dtype, device=x.device)
    if m == 0 or n == 0:
        return out
    bm, bn = _block_shape(h, x.device, block_size)
    bm, bn = min(bm, m), min(bn, n)
    # Stripe-major rows inside each block: row a*bm + i holds stripe a of item i, so that
    # the product of a query block by a gallery block has layout [a, i, b, j] and cell
    # (a, b) of the grid is a [bm, bn] sub-matrix with contiguous rows. The gallery is
    # rearranged once (one copy of it), not once per query block.
    ya = _augment(y.to(work).reshape(-1, c), query_side=False).view(n, h, c + 2)
    g_blocks = [
        ya[j0 : j0 + bn].transpose(0, 1).reshape(-1, c + 2) for j0 in range(0, n, bn)
    ]
    del ya
    buf = torch.empty(h * bm * h * bn, dtype=work, device=x.device)
    tmp = torch.empty(max(h - 1, 1) * bm * bn, dtype=work, device=x.device)
    for i0 in range(0, m, bm):
        xq = _augment(x[i0 : i0 + bm].to(work).reshape(-1, c), query_side=True)
        mb = xq.shape[0] // h
        xb = xq.view(mb, h, c + 2).transpose(0, 1).reshape(-1, c + 2)  # [H*mb, C+2]
        for jb, yb in enumerate(g_blocks):
            j0 = jb * bn
            nb = yb.shape[0] // h
            prod = buf[: h * mb * h * nb].view(h * mb, h * nb)
            torch.mm(xb, yb.t(), out=prod)  # squared stripe distances, [a, i, b, j]
            # tanh(r / 2) = 2 sigmoid(r) - 1, and every right/down path visits exactly
            # 2H - 1 cells, so the cheapest path of tanh(r / 2) is 2 * (cheapest path of
            # sigmoid(r)) - (2H - 1): same path, and torch's sigmoid is several times
            # faster than its tanh on CPU (tanh was the largest cost after the product).
            prod.clamp_min_(_EPS).sqrt_().sigmoid_()
            _dp_in_place(prod, h, mb, nb, tmp)
            out[i0 : i0 + mb, j0 : j0 + nb] = prod.view(h, mb, h, nb)[h - 1, :, h - 1, :]
    return out.mul_(2.0).sub_(2 * h - 1)  # back from the sigmoid form, once for all


def _block_shape(h: int, device: torch.device, block_size: int | None) -> tuple[int, int]:
    """(query rows, gallery rows) per block of the fast path.

    On CPU a block's buffer (H^2 * bm * bn floats: 9 MiB for 192 x 192 and H = 8) should
    stay in the shared L3 cache across the ~45 elementwise passes, yet be large enough
    that the per-call overhead of those passes stays small. Measured on the 2-core EPYC
    (3368 x 15913 pairs, H = 8): 128 x 128 is ~7% slower than 192 x 192, 256 x 256 ~4%,
    64 x 64 ~40%. On CUDA, kernel launches dominate small blocks, so blocks are much
    wider (buffer ~256 MiB for H = 8).
    """
    if device.type == "cuda":
        bm = block_size or 512
        bn = max(1, (1 << 26) // (h * h * bm))
    elif block_size is None:
        bm = 192
        bn = max(1, (192 * 192 * 64) // (h * h * bm))
    else:
        bm = bn = block_size
    return bm, bn


def _dp_in_place(prod: Tensor, h: int, mb: int, nb: int, tmp: Tensor) -> None:
    """Replace the stripe distances in ``prod`` by path costs, cell (H-1, H-1) last.

    ``prod`` is [H*mb, H*nb] with layout [a, i, b, j]. Cells on anti-diagonal k = a + b
    depend only on diagonal k - 1, so a diagonal's interior cells are one strided view
    [cells, mb, nb] (stepping a + 1, b - 1 moves by row_a - nb elements) and their up and
    left neighbours are the same view shifted by -row_a and -nb: two torch calls per
    diagonal, plus one add for each border cell (first row: left neighbour only; first
    column: up only). (Folding the border cells into the diagonal's add through a
    strided scratch copy saves 7 calls a block but measured slower.)
    """
    row_b = h * nb  # elements between rows i and i + 1
    row_a = mb * row_b  # elements between stripe a and a + 1
    step = row_a - nb  # from cell (a, b) to (a + 1, b - 1)
    flat = prod.view(-1)
    base = prod.storage_offset()

    def cells(a0: int, b0: int, count: int) -> Tensor:
        return flat.as_strided(
            (count, mb, nb), (step, row_b, 1), base + a0 * row_a + b0 * nb
        )

    for k in range(1, 2 * h - 1):
        a_lo, a_hi = max(0, k - h + 1), min(k, h - 1)
        if a_lo == 0:
            cells(0, k, 1).add_(cells(0, k - 1, 1))
        if a_hi == k:
            cells(k, 0, 1).add_(cells(k - 1, 0, 1))
        lo, hi = max(a_lo, 1), min(a_hi, k - 1)  # interior cells: a >= 1 and b >= 1
        if hi < lo:
            continue
        count = hi - lo + 1
        up = cells(lo - 1, k - lo, count)
        left = cells(lo, k - lo - 1, count)
        t = tmp[: count * mb * nb].view(count, mb, nb)
        torch.minimum(up, left, out=t)
        cells(lo, k - lo, count).add_(t)


# ------------------------------------------------------- visibility-weighted local

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
    x, y = _full_precision(x), _full_precision(y)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    m, h, c = x.shape
    n = y.shape[0]
    vx = vx.to(device=x.device, dtype=dtype).clamp(VISIBILITY_FLOOR, 1.0)
    vy = vy.to(device=x.device, dtype=dtype).clamp(VISIBILITY_FLOOR, 1.0)
    out = torch.empty((m, n), dtype=dtype, device=x.device)
    if m == 0 or n == 0:
        return out
    with torch.no_grad(), _no_autocast(x):

        def stripe_major(t: Tensor, query_side: bool) -> Tensor:
            """[b, H, C] -> augmented rows [H*b, C+2], row a*b + i = stripe a of item i."""
            return _augment(t.to(dtype).transpose(0, 1).reshape(-1, c), query_side)

        g_blocks = [(stripe_major(y[j0 : j0 + block_size], False), vy[j0 : j0 + block_size].t()) for j0 in range(0, n, block_size)]
        for i0 in range(0, m, block_size):
            xb = stripe_major(x[i0 : i0 + block_size], True)
            vxb = vx[i0 : i0 + block_size].t()  # [H, bm]
            bm = vxb.shape[1]
            for jb, (yb, vyb) in enumerate(g_blocks):
                j0, bn = jb * block_size, vyb.shape[1]
                # Squared stripe distances [a, i, b, j] from one product, then s = sigmoid(r):
                # tanh(r / 2) = 2 s - 1, and every cost below is affine in d with the same
                # (2, -1), so the path is computed on s and mapped back once (as _aligned_nograd).
                prod = torch.mm(xb, yb.t()).clamp_min_(_EPS).sqrt_().sigmoid_()
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


def pairwise_distance(
    qf: Tensor | np.ndarray,
    gf: Tensor | np.ndarray,
    kind: DistanceMetric = "euclidean",
    block_size: int = 4096,
) -> Tensor:
    """Global distance matrix, computed ``block_size`` query rows at a time, no autograd.

    Args:
        qf: shape [M, C]; gf: shape [N, C] (numpy arrays are converted, same device).
        kind: "euclidean" or "cosine".

    Returns:
        shape [M, N] on the device of ``qf``.
    """
    if kind not in ("euclidean", "cosine"):
        raise BadInputError(f"metric: unknown distance {kind!r}; use euclidean or cosine")
    q = torch.as_tensor(qf)
    g = torch.as_tensor(gf, device=q.device)
    fn = euclidean_distance if kind == "euclidean" else cosine_distance
    with torch.no_grad():
        _check_2d(q, g)
        if q.shape[0] <= block_size:
            return fn(q, g)
        return torch.cat([fn(q[i : i + block_size], g) for i in range(0, q.shape[0], block_size)])


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
            top = _smallest_k(glob, k)  # [b, k]
            ql = _to(q_local[i0:i1], dev)  # [b, H, C]
            loc = _aligned_rows(ql, gl, top)  # [b, k]
            short = glob.gather(1, top) + loc
            offset = short.max(dim=1, keepdim=True).values - glob.min(dim=1, keepdim=True).values + 1.0
            res = glob + offset
            res.scatter_(1, top, short)
            out[i0:i1] = res.float().cpu().numpy()
    return out


def _smallest_k(dist: Tensor, k: int) -> Tensor:
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
        cells.clamp_min_(_EPS).sqrt_().sigmoid_()  # see _aligned_nograd for sigmoid
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
