"""Losses: TriHard (global and aligned local), identity cross-entropy, OBC, multi-task."""

from reid.losses.multitask import LossBreakdown, LossConfig, compute_losses, identity_loss
from reid.losses.obc import obc_loss, occlusion_targets
from reid.losses.triplet import (
    global_trihard,
    hard_example_mining,
    local_trihard,
    margin_ranking,
)

__all__ = [
    "LossBreakdown",
    "LossConfig",
    "compute_losses",
    "global_trihard",
    "hard_example_mining",
    "identity_loss",
    "local_trihard",
    "margin_ranking",
    "obc_loss",
    "occlusion_targets",
]
