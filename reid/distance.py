"""Pairwise distances between re-identification features: global (Euclidean, cosine) and
AlignedReID's aligned local distance, computed in blocks so that memory stays bounded; what
training (TriHard mining) and search rank by. The query-by-gallery matrices of evaluation
(global+local, visibility-weighted, shortlisted) are :mod:`reid.retrieval_distance`.

Conventions: the first argument holds M rows (queries, or a training batch), the second N
rows (gallery); every matrix returned has shape [M, N] and row i, column j compares x[i]
with y[j].

Two code paths for the aligned distance:

* with autograd (any input requires grad, as in training on a 64 x 64 batch): plain,
  out-of-place torch operations, so gradients flow through the stripe distances and the
  ``min`` of the dynamic programme (the gradient follows the chosen path);
* without autograd (evaluation, millions of pairs): one matrix product per block produces
  squared stripe distances directly (augmented features, see :func:`augment_rows`), then clamp,
  sqrt and sigmoid run in place (tanh(r/2) = 2 sigmoid(r) - 1, see ``_aligned_nograd``),
  and the dynamic programme runs in place along anti-diagonals of the H x H grid on
  strided views, so a block needs no buffer besides the product itself. On the 2-core
  CPU this is about 1.6x the bare matrix product of all query stripes by all gallery
  stripes (benchmarks/bench_aligned_distance.py).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from common.errors import BadInputError

#: Squared distances are clamped here before the square root: d sqrt(s)/ds = 1/(2 sqrt(s))
#: is infinite at s = 0 (a pair compared with itself), which would turn gradients into NaN.
EPS = 1e-12

DistanceMetric = Literal["euclidean", "cosine"]


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
    x, y = full_precision(x), full_precision(y)
    with no_autocast(x):
        xx = x.pow(2).sum(dim=1, keepdim=True)  # [M, 1]
        yy = y.pow(2).sum(dim=1, keepdim=True).t()  # [1, N]
        sq = torch.addmm(xx + yy, x, y.t(), beta=1.0, alpha=-2.0)
        return sq.clamp(min=EPS).sqrt()


def cosine_distance(x: Tensor, y: Tensor) -> Tensor:
    """1 - cosine similarity between every row of ``x`` [M, C] and of ``y`` [N, C].

    Returns shape [M, N], values in [0, 2]. Zero rows are treated as having norm 1e-12
    (their similarity with anything is 0, distance 1) instead of producing NaN.
    """
    _check_2d(x, y)
    x, y = full_precision(x), full_precision(y)
    with no_autocast(x):
        xn = torch.nn.functional.normalize(x, p=2.0, dim=1, eps=EPS)
        yn = torch.nn.functional.normalize(y, p=2.0, dim=1, eps=EPS)
        return 1.0 - xn @ yn.t()


def full_precision(t: Tensor) -> Tensor:
    """float16/bfloat16 -> float32 (differentiable cast); other dtypes unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def no_autocast(t: Tensor) -> torch.autocast:
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
        x, y = full_precision(x), full_precision(y)
        with no_autocast(x):
            return _aligned_autograd(x, y, block_size or 128)
    with torch.no_grad(), no_autocast(x):
        return _aligned_nograd(x, y, block_size)


def aligned_pair_distance(x: Tensor, y: Tensor) -> Tensor:
    """The aligned distance of :func:`aligned_local_distance` for matched rows: x[i] with y[i].

    What TriHard's local term needs: the distance of each anchor to its mined positive and
    negative only (2N pairs), not the N x N matrix (N^2 pairs, each an H x H path search with
    autograd: about 150 ms a step on the CPU for N = 128, H = 8, and 1.7 s for H = 16).
    Same stripe distances and path, computed the same way (squared distances as
    ||x||^2 + ||y||^2 - 2 x.y, clamped at :data:`EPS`), so entry i equals
    ``aligned_local_distance(x, y)[i, i]``.

    Args:
        x: shape [N, H, C].
        y: shape [N, H, C].

    Returns:
        shape [N], float32 (float64 for float64 inputs); differentiable.
    """
    if x.dim() != 3 or x.shape != y.shape:
        raise BadInputError(
            f"local features: expected two [N, H, C] tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    x, y = full_precision(x), full_precision(y)
    with no_autocast(x):
        xx = x.pow(2).sum(dim=2, keepdim=True)  # [N, H, 1]
        yy = y.pow(2).sum(dim=2).unsqueeze(1)  # [N, 1, H]
        sq = torch.baddbmm(xx + yy, x, y.transpose(1, 2), beta=1.0, alpha=-2.0)  # [N, H, H]
        return _dp_out_of_place(stripe_distance(sq.clamp(min=EPS).sqrt()))


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


def augment_rows(x: Tensor, query_side: bool) -> Tensor:
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
    ya = augment_rows(y.to(work).reshape(-1, c), query_side=False).view(n, h, c + 2)
    g_blocks = [
        ya[j0 : j0 + bn].transpose(0, 1).reshape(-1, c + 2) for j0 in range(0, n, bn)
    ]
    del ya
    buf = torch.empty(h * bm * h * bn, dtype=work, device=x.device)
    tmp = torch.empty(max(h - 1, 1) * bm * bn, dtype=work, device=x.device)
    for i0 in range(0, m, bm):
        xq = augment_rows(x[i0 : i0 + bm].to(work).reshape(-1, c), query_side=True)
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
            prod.clamp_min_(EPS).sqrt_().sigmoid_()
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
