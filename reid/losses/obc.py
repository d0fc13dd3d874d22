"""Occlusion-classification (OBC) loss: cross-entropy of the OBC head against occlusion labels.

Label convention (the same as the model's OBC head and the HDF5 ``occluded`` column):
class 1 = occluded, class 0 = clean. The paper wrote 0 for occluded; the loss value does not
depend on the convention, only on using the same one in the head, the data and the metrics.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def occlusion_targets(occluded: Tensor) -> Tensor:
    """bool (or 0/1) tensor of shape [N] -> long class indices [N] (1 = occluded, 0 = clean)."""
    return occluded.to(torch.long)


def obc_loss(occ_logits: Tensor, occluded: Tensor) -> tuple[Tensor, Tensor]:
    """OBC cross-entropy and accuracy.

    Args:
        occ_logits: shape [N, 2], logits of (clean, occluded).
        occluded: shape [N], bool or 0/1 integers; True / 1 = occluded.

    Returns:
        loss: scalar, mean over the batch of -log softmax(occ_logits)[i, y_i].
        accuracy: scalar (no grad), fraction of argmax predictions equal to the label.
    """
    if occ_logits.dim() != 2 or occ_logits.shape[1] != 2 or occluded.shape != occ_logits.shape[:1]:
        raise ValueError(
            f"expected occ_logits [N, 2] and occluded [N], got {tuple(occ_logits.shape)} and {tuple(occluded.shape)}"
        )
    target = occlusion_targets(occluded)
    loss = F.cross_entropy(occ_logits, target)
    accuracy = (occ_logits.detach().argmax(dim=1) == target).float().mean()
    return loss, accuracy
