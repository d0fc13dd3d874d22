"""Tests of reid.distance (global distances, the aligned local distance) and reid.retrieval_distance
(matrices, shortlist)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from reid.distance import (
    aligned_local_distance,
    aligned_pair_distance,
    cosine_distance,
    euclidean_distance,
    pairwise_distance,
    stripe_distance,
)
from reid.retrieval_distance import combined_distance, shortlist_aligned_distance


def _brute_aligned(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Aligned distance by the definition, float64, one pair at a time."""
    m, h, _ = x.shape
    out = np.zeros((m, y.shape[0]))
    for i in range(m):
        for j in range(y.shape[0]):
            dist = np.linalg.norm(x[i][:, None, :] - y[j][None, :, :], axis=2)
            d = (np.exp(dist) - 1) / (np.exp(dist) + 1)
            cost = np.full((h, h), np.inf)
            for a in range(h):
                for b in range(h):
                    prev = 0.0 if a == b == 0 else min(
                        cost[a - 1, b] if a else np.inf, cost[a, b - 1] if b else np.inf
                    )
                    cost[a, b] = prev + d[a, b]
            out[i, j] = cost[-1, -1]
    return out


def test_euclidean_matches_cdist_and_has_finite_gradient_on_equal_rows() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=torch.float64)
    y = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(euclidean_distance(x, y), torch.cdist(x, y))
    xr = x.clone().requires_grad_(True)
    d = euclidean_distance(xr, xr)  # zero on the diagonal: the clamp must keep grads finite
    assert d.diagonal().max().item() <= 1e-5
    d.sum().backward()
    assert torch.isfinite(xr.grad).all()


def test_cosine_distance() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    y = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    expected = torch.tensor(
        [[0.0, 2.0, 1 - 1 / math.sqrt(2)], [1.0, 1.0, 1 - 1 / math.sqrt(2)], [1.0, 1.0, 1.0]]
    )
    torch.testing.assert_close(cosine_distance(x, y), expected)


def test_stripe_distance_formula_and_large_inputs() -> None:
    x = torch.tensor([0.0, 0.5, 2.0, 10.0], dtype=torch.float64)
    naive = (torch.exp(x) - 1) / (torch.exp(x) + 1)
    torch.testing.assert_close(stripe_distance(x), naive)
    big = torch.tensor([100.0, 1e4])  # e^x overflows float32: the naive formula gives NaN
    assert torch.isnan((torch.exp(big) - 1) / (torch.exp(big) + 1)).all()
    torch.testing.assert_close(stripe_distance(big), torch.ones(2))


def test_aligned_hand_computed_two_stripes() -> None:
    # x stripes: (0, 0) then (3, 4); y stripes: both (0, 0). Stripe distances: d00 = d01 = 0,
    # d10 = d11 = tanh(5 / 2). Right then down: 0 + 0 + tanh(2.5); down then right:
    # 0 + 2 tanh(2.5). The shortest is tanh(2.5) (plus ~1e-6 from the clamp at 0).
    x = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    y = torch.zeros(1, 2, 2)
    expected = math.tanh(2.5)
    assert aligned_local_distance(x, y).item() == pytest.approx(expected, abs=1e-5)
    xr = x.clone().requires_grad_(True)
    assert aligned_local_distance(xr, y).item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("h", [1, 2, 3, 6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_aligned_matches_brute_force(h: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(h)
    x = torch.randn(7, h, 5, generator=gen, dtype=dtype)
    y = torch.randn(9, h, 5, generator=gen, dtype=dtype)
    ref = torch.from_numpy(_brute_aligned(x.double().numpy(), y.double().numpy()))
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    for bs in (None, 1, 4, 100):
        fast = aligned_local_distance(x, y, block_size=bs)  # no autograd: in-place path
        assert fast.dtype == dtype and fast.shape == (7, 9)
        torch.testing.assert_close(fast.double(), ref, atol=tol, rtol=0)
        grad = aligned_local_distance(x.clone().requires_grad_(True), y, block_size=bs)
        assert grad.requires_grad
        torch.testing.assert_close(grad.detach().double(), ref, atol=tol, rtol=0)


def test_aligned_properties() -> None:
    gen = torch.Generator().manual_seed(3)
    h = 5
    x = torch.randn(6, h, 8, generator=gen)
    y = torch.randn(4, h, 8, generator=gen)
    dxy = aligned_local_distance(x, y)
    # Symmetric in its two arguments.
    torch.testing.assert_close(aligned_local_distance(y, x), dxy.t(), atol=1e-5, rtol=0)
    # No larger than the cost of any fixed right/down path.
    d = torch.tanh(torch.cdist(x.reshape(-1, 8), y.reshape(-1, 8)) / 2)
    d = d.view(6, h, 4, h).permute(0, 2, 1, 3)  # [M, N, H, H]
    first_row_then_last_col = d[:, :, 0, :].sum(-1) + d[:, :, 1:, -1].sum(-1)
    first_col_then_last_row = d[:, :, :, 0].sum(-1) + d[:, :, -1, 1:].sum(-1)
    staircase = sum(d[:, :, a, a] for a in range(h)) + sum(
        d[:, :, a, a + 1] for a in range(h - 1)
    )
    for path in (first_row_then_last_col, first_col_then_last_row, staircase):
        assert (dxy <= path + 1e-5).all()
    # Only right/down moves: not zero on identical inputs (a path has 2H - 1 cells, at
    # most H of them on the diagonal).
    dxx = aligned_local_distance(x, x)
    assert (dxx.diagonal() > 0.5).all()


@pytest.mark.parametrize("h", [1, 3, 8])
def test_aligned_pair_distance_is_the_matrix_diagonal(h: int) -> None:
    """Matched rows give the brute-force aligned distance of each pair, the diagonal of the
    N x N matrix, with autograd and without."""
    gen = torch.Generator().manual_seed(10 + h)
    x = torch.randn(6, h, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(6, h, 5, generator=gen, dtype=torch.float64)
    ref = torch.from_numpy(_brute_aligned(x.numpy(), y.numpy())).diagonal()
    torch.testing.assert_close(aligned_pair_distance(x, y), ref, atol=1e-9, rtol=0)
    pairs = aligned_pair_distance(x.float().requires_grad_(True), y.float())
    assert pairs.shape == (6,) and pairs.dtype == torch.float32 and pairs.requires_grad
    torch.testing.assert_close(pairs.detach().double(), ref, atol=1e-5, rtol=0)
    with pytest.raises(BadInputError, match="one shape"):
        aligned_pair_distance(x, y[:5])


def test_aligned_pair_distance_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(aligned_pair_distance, (x, y))


def test_aligned_gradcheck() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: aligned_local_distance(a, b, 2), (x, y))


def test_aligned_bad_shapes() -> None:
    with pytest.raises(BadInputError, match=r"got \(2, 4, 3\) and \(2, 5, 3\); pass stripe features of equal H and C"):
        aligned_local_distance(torch.zeros(2, 4, 3), torch.zeros(2, 5, 3))
    with pytest.raises(BadInputError, match=r"expected shapes \[M, H, C\] and \[N, H, C\], got \(2, 4\) and \(2, 4\)"):
        aligned_local_distance(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(BadInputError, match="block_size: must be >= 1, got 0"):
        aligned_local_distance(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), block_size=0)


def test_aligned_empty() -> None:
    assert aligned_local_distance(torch.zeros(0, 4, 3), torch.zeros(5, 4, 3)).shape == (0, 5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_aligned_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, 16, generator=gen)
    y = torch.randn(70, 8, 16, generator=gen)
    out = aligned_local_distance(x.cuda(), y.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), aligned_local_distance(x, y), atol=1e-4, rtol=0)


def test_pairwise_blocked_equals_unblocked() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(11, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(13, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(pairwise_distance(q, g, "euclidean", block_size=3), torch.cdist(q, g))
    torch.testing.assert_close(pairwise_distance(q, g, "cosine", block_size=4), cosine_distance(q, g))
    with pytest.raises(BadInputError, match="unknown distance \'manhattan\'; use euclidean or cosine"):
        pairwise_distance(q, g, "manhattan")  # type: ignore[arg-type]


def _features(seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(9, 16, generator=gen),
        torch.randn(14, 16, generator=gen),
        torch.randn(9, 4, 8, generator=gen),
        torch.randn(14, 4, 8, generator=gen),
    )


def test_combined_distance_modes() -> None:
    qg, gg, ql, gl = _features()
    glob = combined_distance(qg, gg, mode="global", device="cpu", block_size=4)
    loc = combined_distance(None, None, ql, gl, mode="local", device="cpu", block_size=4)
    both = combined_distance(qg.numpy(), gg.numpy(), ql.numpy(), gl.numpy(), mode="global+local")
    assert glob.dtype == np.float32 and glob.shape == (9, 14)
    np.testing.assert_allclose(glob, torch.cdist(qg, gg).numpy(), atol=1e-4)
    np.testing.assert_allclose(loc, aligned_local_distance(ql, gl).numpy(), atol=1e-5)
    np.testing.assert_allclose(both, glob + loc, atol=1e-5)
    cos = combined_distance(qg, gg, mode="global", metric="cosine")
    np.testing.assert_allclose(cos, cosine_distance(qg, gg).numpy(), atol=1e-6)
    with pytest.raises(BadInputError, match="--distance local: local features are missing"):
        combined_distance(qg, gg, mode="local")
    with pytest.raises(BadInputError, match="--distance: unknown mode \'both\'"):
        combined_distance(qg, gg, ql, gl, mode="both")  # type: ignore[arg-type]


def test_shortlist_full_k_equals_combined() -> None:
    qg, gg, ql, gl = _features(1)
    full = combined_distance(qg, gg, ql, gl, mode="global+local")
    short = shortlist_aligned_distance(qg, gg, ql, gl, k=14)
    np.testing.assert_allclose(short, full, atol=1e-4)


def test_shortlist_places_the_rest_after_in_global_order() -> None:
    qg, gg, ql, gl = _features(2)
    k = 5
    glob = torch.cdist(qg, gg).numpy()
    full = combined_distance(qg, gg, ql, gl, mode="global+local")
    short = shortlist_aligned_distance(qg, gg, ql, gl, k=k, block_size=4)
    for i in range(glob.shape[0]):
        top = np.argsort(glob[i], kind="stable")[:k]
        rest = np.setdiff1d(np.arange(glob.shape[1]), top)
        np.testing.assert_allclose(short[i, top], full[i, top], atol=1e-4)
        assert short[i, rest].min() > short[i, top].max()
        np.testing.assert_array_equal(
            np.argsort(short[i, rest], kind="stable"), np.argsort(glob[i, rest], kind="stable")
        )
    with pytest.raises(BadInputError, match="--shortlist: k must be >= 1, got 0"):
        shortlist_aligned_distance(qg, gg, ql, gl, k=0)


def test_half_precision_under_autocast_keeps_finite_gradients() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 8, generator=gen).to(torch.bfloat16).requires_grad_(True)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        glob = euclidean_distance(x[:, 0], x[:, 0])  # zero diagonal
        loc = aligned_local_distance(x, x)
    assert glob.dtype == torch.float32 and loc.dtype == torch.float32
    (glob.sum() + loc.sum()).backward()
    assert torch.isfinite(x.grad.float()).all()
    ref = aligned_local_distance(x.detach().float(), x.detach().float())
    torch.testing.assert_close(loc.detach(), ref, atol=1e-5, rtol=0)


def test_smallest_k_is_the_first_k_of_a_stable_sort() -> None:
    from reid.retrieval_distance import smallest_k

    gen = torch.Generator().manual_seed(4)
    dist = torch.randint(0, 4, (30, 25), generator=gen).float()  # many ties
    for k in (1, 3, 10, 25):
        got = smallest_k(dist, k)
        want = torch.sort(dist, dim=1, stable=True).indices[:, :k]
        assert torch.equal(got.sort(dim=1).values, want.sort(dim=1).values)
