"""Twin consistency: an occluded image's feature pulled toward its clean twin's (detached).

A teacher-free distillation for joint batches (``--train-on both``): the clean image is the
teacher of its own occluded copy, so the occluded feature learns to land where the clean one
is, while the clean feature receives no gradient from this term (it is shaped by the identity
losses alone, so the term cannot pull clean features toward occluded ones).

    L_twin = mean over occluded images j with a clean twin i in the batch of 1 - cos(f_j, sg(f_i))

on the BN-neck feature (the retrieval feature of the default recipe; cosine, so the term does
not fight the triplet loss over the features' scale).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def twin_pairs(occluded: Tensor, clean_index: Tensor) -> tuple[Tensor, Tensor]:
    """(occluded rows, their clean twins' rows) of a batch.

    Args:
        occluded: shape [N] bool.
        clean_index: shape [N], the clean original of each image (twins share it).

    Returns:
        Two long tensors of shape [M]: each occluded image that has its clean original in the
        batch, and the row of that original (the first such row when it appears twice).
    """
    occluded = occluded.to(torch.bool)
    same = clean_index.unsqueeze(1) == clean_index.unsqueeze(0)  # [N, N]
    candidates = same & occluded.unsqueeze(1) & ~occluded.unsqueeze(0)  # row occluded, column its clean twin
    has_twin = candidates.any(dim=1)
    rows = torch.nonzero(has_twin).flatten()
    twins = candidates[rows].float().argmax(dim=1)  # the first True column
    return rows, twins


def twin_loss(features: Tensor, occluded: Tensor, clean_index: Tensor) -> Tensor:
    """Mean of 1 - cos(occluded feature, detached clean twin's feature); 0 without pairs.

    Args:
        features: shape [N, D].
        occluded: shape [N] bool.
        clean_index: shape [N].

    Returns:
        A scalar, attached to ``features`` (zero, still attached, when the batch has no pair).
    """
    rows, twins = twin_pairs(occluded.to(features.device), clean_index.to(features.device))
    if rows.numel() == 0:
        return features.sum() * 0.0
    cosine = F.cosine_similarity(features[rows], features[twins].detach(), dim=1)
    return (1.0 - cosine).mean()
