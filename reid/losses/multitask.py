"""The paper's multi-task loss L = alpha * L_T + (1 - alpha) * L_O.

L_T, the "identity" part, is everything plain AlignedReID trains with:

    L_T = TriHard_global + local_weight * TriHard_local + id_weight * CE_id

(AlignedReID trains TriHard on both distances together with a softmax identity loss, so the
identity cross-entropy belongs in L_T: ``alpha = 1`` is then exactly plain AlignedReID.)
L_O is the OBC cross-entropy. With a visibility head, the per-stripe visibility loss L_V
(:mod:`reid.losses.visibility`) is a term of its own, outside alpha:

    L = alpha * L_T + (1 - alpha) * L_O + visibility_weight * L_V

and with ``twin_weight`` > 0 the twin-consistency term (:mod:`reid.losses.twin`) is added the
same way, ``+ twin_weight * L_twin``

(their own terms so that alpha keeps its paper meaning and ``alpha = 1`` with a visibility
weight is AlignedReID plus the visibility head, nothing else). A term whose weight is zero is still computed for the log, but
outside the autograd graph: with ``alpha = 1`` the OBC head receives no gradient at all
(``grad is None``), so optimisers skip it entirely, weight decay included, and its weights
stay exactly as initialised.

All losses are computed in float32 with autocast disabled (distances, square roots and the
aligned-distance dynamic programme are not safe in float16).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from common.errors import BadInputError
from common.options import Option, validate_options
from reid.losses.obc import obc_loss
from reid.losses.triplet import global_trihard, local_trihard
from reid.losses.twin import twin_loss
from reid.losses.visibility import visibility_loss
from reid.models.aligned import ModelOutput
from reid.options import (
    ALPHA,
    CLEAN_ANCHORS_ONLY,
    EXCLUDE_TWIN_POSITIVE,
    LABEL_SMOOTHING,
    MARGIN,
    TWIN_WEIGHT,
    VISIBILITY_WEIGHT,
)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the multi-task loss.

    Attributes:
        alpha: L = alpha * L_T + (1 - alpha) * L_O; 1 = plain AlignedReID (OBC head untrained).
        margin: TriHard margin (global and local).
        id_weight: weight of the identity cross-entropy inside L_T.
        label_smoothing: epsilon of the identity cross-entropy (0 = none).
        local_weight: weight of the local TriHard inside L_T.
        exclude_twin_positive: an image's own clean/occluded twin (same ``clean_index``) is
            never mined as its hardest positive; otherwise, in a ``--train-on both`` batch, the
            hardest positive of a clean anchor is usually its own occluded copy.
        clean_anchors_only: occluded images are not anchors of the two TriHard terms (they
            still serve as positives and negatives of clean anchors, and still feed the
            identity and OBC losses).
        visibility_weight: weight of the per-stripe visibility BCE, a term of its own outside
            alpha; 0 = the visibility head (if any) gets no gradient.
        twin_weight: weight of the twin-consistency term (occluded BN feature toward its
            clean twin's, detached), a term of its own outside alpha; needs ``clean_index``.
    """

    alpha: float = ALPHA.field()
    margin: float = MARGIN.field()
    id_weight: float = Option(1.0, cli="", low=0.0).field()
    label_smoothing: float = LABEL_SMOOTHING.field()
    local_weight: float = Option(1.0, cli="", low=0.0).field()
    exclude_twin_positive: bool = EXCLUDE_TWIN_POSITIVE.field()
    clean_anchors_only: bool = CLEAN_ANCHORS_ONLY.field()
    visibility_weight: float = VISIBILITY_WEIGHT.field()
    twin_weight: float = TWIN_WEIGHT.field()

    def __post_init__(self) -> None:
        validate_options(self)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class LossBreakdown:
    """One evaluation of the multi-task loss. ``total`` carries the graph; the rest are detached.

    All fields are scalar tensors.

    Attributes:
        total: alpha * identity + (1 - alpha) * obc + visibility_weight * visibility,
            restricted to terms with non-zero weight.
        identity: L_T = triplet_global + local_weight * triplet_local + id_weight * id.
        triplet_global, triplet_local: the two TriHard losses.
        id: identity cross-entropy (with label smoothing); id_acc its top-1 accuracy.
        obc: OBC cross-entropy; obc_acc its accuracy.
        violation_fraction: fraction of global triplets with dist_an - dist_ap < margin.
        violation_local: the same for the local triplets.
        dist_ap, dist_an: mean global distance to the hardest positive / negative.
        visibility: per-stripe visibility BCE over the stripes with a target (0 without a
            visibility head or targets); visibility_error its mean |predicted - target|.
        twin: twin-consistency loss (0 when the batch has no clean/occluded twins or no
            ``clean_index`` was given).
    """

    total: Tensor
    identity: Tensor
    triplet_global: Tensor
    triplet_local: Tensor
    id: Tensor
    id_acc: Tensor
    obc: Tensor
    obc_acc: Tensor
    violation_fraction: Tensor
    violation_local: Tensor
    dist_ap: Tensor
    dist_an: Tensor
    visibility: Tensor = field(default_factory=lambda: torch.zeros(()))
    visibility_error: Tensor = field(default_factory=lambda: torch.zeros(()))
    twin: Tensor = field(default_factory=lambda: torch.zeros(()))


def identity_loss(id_logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """Identity cross-entropy with label smoothing, and top-1 accuracy.

    With smoothing eps the target is (1 - eps) * one_hot + eps / K (torch's ``label_smoothing``,
    the same as BoT's CrossEntropyLabelSmooth).

    Args:
        id_logits: shape [N, K].
        labels: shape [N], contiguous class indices 0..K-1.

    Returns:
        loss: scalar; accuracy: scalar (no grad).
    """
    loss = F.cross_entropy(id_logits, labels, label_smoothing=label_smoothing)
    accuracy = (id_logits.detach().argmax(dim=1) == labels).float().mean()
    return loss, accuracy


@contextlib.contextmanager
def _grad_if(flag: bool) -> Iterator[None]:
    """Record autograd only when ``flag`` and when it is already enabled (e.g. not in no_grad)."""
    with torch.set_grad_enabled(torch.is_grad_enabled() and flag):
        yield


def compute_losses(
    output: ModelOutput,
    pids: Tensor,
    occluded: Tensor,
    config: LossConfig,
    clean_index: Tensor | None = None,
    visibility_target: Tensor | None = None,
) -> LossBreakdown:
    """The multi-task loss of one batch.

    Args:
        output: the model's forward on the batch.
        pids: shape [N] long, the *contiguous* training class index of each image (the HDF5
            train ``label`` column, 0..num_classes-1), used both as TriHard identity and as
            the classifier target.
        occluded: shape [N] bool (True = occluded, OBC class 1).
        config: weights.
        clean_index: shape [N], the clean original of each image (twins share it); needed
            by ``config.exclude_twin_positive`` and ``config.twin_weight``.
        visibility_target: shape [N, H], the visible fraction of each stripe, NaN where
            unknown (:func:`reid.losses.visibility.visibility_targets`); needed when
            ``config.visibility_weight`` > 0, logged when given otherwise.

    Raises:
        ValueError: a class index outside the classifier's range, a batch with one identity,
            or a visibility weight without a visibility head or targets.
    """
    num_classes = output.id_logits.shape[1]
    pids = pids.to(device=output.id_logits.device, dtype=torch.long)
    occluded = occluded.to(output.occ_logits.device)
    if pids.numel() and (int(pids.min()) < 0 or int(pids.max()) >= num_classes):
        raise ValueError(f"pids must be class indices in [0, {num_classes}); got {pids.min()}..{pids.max()}")
    exclude_positive = None
    if (config.exclude_twin_positive or config.twin_weight > 0.0) and clean_index is None:
        raise ValueError("exclude_twin_positive and twin_weight need the clean_index of every image")
    if config.exclude_twin_positive:
        twins = clean_index.to(pids.device)
        exclude_positive = twins.unsqueeze(1) == twins.unsqueeze(0)  # [N, N]; the diagonal stays a positive
    anchors = ~occluded.to(pids.device) if config.clean_anchors_only else None

    use_identity = config.alpha > 0.0
    device_type = output.global_feat.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        with _grad_if(use_identity):
            global_feat = output.global_feat.float()
            loss_global, dist_ap, dist_an, p_inds, n_inds, viol_global = global_trihard(
                global_feat, pids, config.margin, exclude_positive, anchors
            )
        with _grad_if(use_identity and config.local_weight > 0.0):
            loss_local, viol_local = local_trihard(output.local_feat.float(), p_inds, n_inds, config.margin, anchors)
        with _grad_if(use_identity and config.id_weight > 0.0):
            loss_id, id_acc = identity_loss(output.id_logits.float(), pids, config.label_smoothing)
        with _grad_if(config.alpha < 1.0):
            loss_obc, obc_acc = obc_loss(output.occ_logits.float(), occluded)
        use_visibility = config.visibility_weight > 0.0
        if use_visibility and (not output.has_visibility or visibility_target is None):
            raise ValueError("visibility_weight > 0 needs a model with a visibility head and a visibility_target")
        loss_vis = vis_error = torch.zeros((), device=output.occ_logits.device)
        if output.has_visibility and visibility_target is not None:
            with _grad_if(use_visibility):
                loss_vis, vis_error = visibility_loss(
                    output.visibility_logits.float(), visibility_target.to(output.visibility_logits.device)  # type: ignore[union-attr]
                )

        loss_twin = torch.zeros((), device=output.bn_feat.device)
        if clean_index is not None:
            with _grad_if(config.twin_weight > 0.0):
                loss_twin = twin_loss(output.bn_feat.float(), occluded, clean_index)

        identity = loss_global + config.local_weight * loss_local + config.id_weight * loss_id
        if config.alpha == 1.0:
            total = identity
        elif config.alpha == 0.0:
            total = loss_obc
        else:
            total = config.alpha * identity + (1.0 - config.alpha) * loss_obc
        if use_visibility:
            total = total + config.visibility_weight * loss_vis
        if config.twin_weight > 0.0:
            total = total + config.twin_weight * loss_twin

    return LossBreakdown(
        total=total,
        identity=identity.detach(),
        triplet_global=loss_global.detach(),
        triplet_local=loss_local.detach(),
        id=loss_id.detach(),
        id_acc=id_acc,
        obc=loss_obc.detach(),
        obc_acc=obc_acc,
        violation_fraction=viol_global,
        violation_local=viol_local,
        dist_ap=dist_ap.detach().mean(),
        dist_an=dist_an.detach().mean(),
        visibility=loss_vis.detach(),
        visibility_error=vis_error,
        twin=loss_twin.detach(),
    )
