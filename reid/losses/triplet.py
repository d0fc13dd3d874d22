"""Batch-hard triplet loss (TriHard) on the global and on the aligned local distance.

AlignedReID's recipe: for each anchor, the hardest positive (same identity, largest global
distance) and the hardest negative (other identity, smallest global distance) are mined on the
*global* Euclidean distance; the local loss then uses the aligned local distances of those same
pairs, so that both branches learn from one consistent set of triplets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reid.distance import aligned_pair_distance, euclidean_distance


def hard_example_mining(
    dist: Tensor, labels: Tensor, exclude_positive: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Batch-hard mining on a square distance matrix.

    The anchor itself counts as one of its positives: its self-distance (about 0) is never the
    maximum unless the anchor is the only image of its identity in the batch, in which case
    ``dist_ap`` is that self-distance and ``p_inds[i] == i`` (a P x K batch with K >= 2 never
    has that case). Ties go to the lowest index on the CPU (torch's max/min; not guaranteed on
    CUDA, where any tied index may be returned).

    Args:
        dist: shape [N, N], distance of sample i to sample j.
        labels: shape [N], identity labels (any integer dtype).
        exclude_positive: shape [N, N] bool, or None: pairs (i, j) never mined as a positive
            of anchor i (e.g. j is i's own occluded twin); the diagonal is ignored, so the
            anchor itself stays its positive of last resort.

    Returns:
        dist_ap: shape [N], distance to the hardest positive (differentiable w.r.t. ``dist``).
        dist_an: shape [N], distance to the hardest negative.
        p_inds: shape [N] long, column of the hardest positive of each anchor.
        n_inds: shape [N] long, column of the hardest negative of each anchor.

    Raises:
        ValueError: an anchor without any negative (the batch holds a single identity).
    """
    if dist.dim() != 2 or dist.shape[0] != dist.shape[1] or labels.shape != (dist.shape[0],):
        raise ValueError(f"expected dist [N, N] and labels [N], got {tuple(dist.shape)} and {tuple(labels.shape)}")
    is_pos = labels.unsqueeze(1) == labels.unsqueeze(0)  # [N, N]
    if bool(is_pos.all(dim=1).any()):
        raise ValueError("TriHard needs at least two identities in a batch (P >= 2); some anchor has no negative")
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    positives = is_pos
    if exclude_positive is not None:
        eye = torch.eye(len(labels), dtype=torch.bool, device=dist.device)
        positives = is_pos & ~(exclude_positive.to(dist.device) & ~eye)
    dist_ap, p_inds = torch.where(positives, dist, -inf).max(dim=1)
    dist_an, n_inds = torch.where(is_pos, inf, dist).min(dim=1)
    return dist_ap, dist_an, p_inds, n_inds


def margin_ranking(
    dist_ap: Tensor, dist_an: Tensor, margin: float, anchors: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Triplet hinge: mean(relu(dist_ap - dist_an + margin)) and the violation fraction.

    Equals ``nn.MarginRankingLoss(margin)(dist_an, dist_ap, y=1)``.

    Args:
        dist_ap, dist_an: shape [N].
        anchors: shape [N] bool, or None (all): the anchors whose triplets count; both the
            mean and the violation fraction are over these (0 when there is none).

    Returns:
        loss: scalar tensor.
        violation_fraction: scalar tensor (no grad), fraction of triplets with
            dist_an - dist_ap < margin, i.e. the ones that still contribute to the loss.
    """
    hinge = torch.relu(dist_ap - dist_an + margin)
    violated = ((dist_an - dist_ap).detach() < margin).float()
    if anchors is None:
        return hinge.mean(), violated.mean()
    weight = anchors.to(hinge.dtype)
    count = weight.sum().clamp(min=1.0)
    return (hinge * weight).sum() / count, (violated * weight).sum() / count


def global_trihard(
    global_feat: Tensor,
    labels: Tensor,
    margin: float = 0.3,
    exclude_positive: Tensor | None = None,
    anchors: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """TriHard on the Euclidean distance of the global features.

    Args:
        global_feat: shape [N, D].
        labels: shape [N].
        exclude_positive: shape [N, N] bool or None, see :func:`hard_example_mining`.
        anchors: shape [N] bool or None, see :func:`margin_ranking`.

    Returns:
        loss (scalar), dist_ap [N], dist_an [N], p_inds [N], n_inds [N], violation fraction
        (scalar, no grad).
    """
    gdist = euclidean_distance(global_feat, global_feat)  # [N, N]
    dist_ap, dist_an, p_inds, n_inds = hard_example_mining(gdist, labels, exclude_positive)
    loss, violation = margin_ranking(dist_ap, dist_an, margin, anchors)
    return loss, dist_ap, dist_an, p_inds, n_inds, violation


def local_trihard(
    local_feat: Tensor, p_inds: Tensor, n_inds: Tensor, margin: float = 0.3, anchors: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """TriHard on the aligned local distance for given (globally mined) pairs.

    Args:
        local_feat: shape [N, H, C].
        p_inds, n_inds: shape [N], positive / negative column of each anchor.
        anchors: shape [N] bool or None, see :func:`margin_ranking`.

    Returns:
        loss: mean_i relu(L[i, p_i] - L[i, n_i] + margin), L the aligned local distance.
        violation fraction: scalar, no grad.
    """
    # Only the 2N mined pairs: the full N x N aligned matrix (AlignedReID's reference code)
    # would cost N/2 times the path searches for the same loss and gradients. index_select,
    # not local_feat[p_inds]: mined rows repeat, and advanced indexing's backward sums into a
    # repeated row with atomic adds across CPU threads, in any order (not the same bytes twice).
    local_ap = aligned_pair_distance(local_feat, local_feat.index_select(0, p_inds))  # [N]
    local_an = aligned_pair_distance(local_feat, local_feat.index_select(0, n_inds))  # [N]
    return margin_ranking(local_ap, local_an, margin, anchors)
