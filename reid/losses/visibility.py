"""Per-stripe visibility: targets from the simulator's occluder boxes, and their loss.

The generator knows exactly which pixels it covered, so every occluded training image comes
with a free, exact visibility label per horizontal stripe: the fraction of the stripe the
occluder box does *not* cover. The model's visibility head (``ModelConfig.visibility_head``)
predicts one logit per stripe and is trained with a binary cross-entropy against that
fraction (a soft target in [0, 1]).

Stripe geometry: stripe i of H is the band of input rows [i * H_in / H, (i + 1) * H_in / H)
over the full width. The model pools the feature map's height into H equal bins (adaptive
average pooling, exact when the map height is a multiple of H), and each feature row sees an
equal band of input rows, so this band is what the stripe feature summarises.

Which rows carry a target:

* clean rows (``occluded`` False): visible everywhere (target 1 for every stripe);
* occluded rows with a box: 1 - coverage of each stripe;
* occluded rows without a box (any coordinate < 0: a ``real`` occlusion from a real
  benchmark whose occluder is unknown, or a transform that cannot map the box) and rows of
  type ``real``: no target; they are masked out of the loss (target NaN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from occsim import schema

#: occ_type code of genuinely occluded crops of a real benchmark (box unknown), when the
#: schema has it; such rows never carry a visibility target, whatever their box says.
REAL_OCC_TYPE: int | None = int(schema.OccType["REAL"]) if "REAL" in schema.OccType.__members__ else None


def stripe_coverage(boxes: Tensor, input_size: Sequence[int], num_stripes: int) -> Tensor:
    """Fraction of each horizontal stripe covered by each box.

    Args:
        boxes: shape [N, 4], (x, y, w, h) in input pixels (floats allowed); a box with any
            coordinate < 0 means "no box" and covers nothing. Boxes are clipped to the frame.
        input_size: (H_in, W_in) of the network input.
        num_stripes: H, the number of equal horizontal stripes.

    Returns:
        shape [N, H] float32 in [0, 1]: area(box ∩ stripe_i) / area(stripe_i).
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(boxes.shape)}")
    if num_stripes < 1:
        raise ValueError(f"num_stripes must be >= 1, got {num_stripes}")
    height, width = float(input_size[0]), float(input_size[1])
    boxes = boxes.to(torch.float32)
    x, y, w, h = boxes.unbind(dim=1)
    x0, x1 = x.clamp(0.0, width), (x + w).clamp(0.0, width)
    y0, y1 = y.clamp(0.0, height), (y + h).clamp(0.0, height)
    covered_width = (x1 - x0).clamp(min=0.0) / width  # [N], fraction of the width
    edges = torch.linspace(0.0, height, num_stripes + 1, device=boxes.device, dtype=torch.float32)
    top, bottom = edges[:-1], edges[1:]  # [H]
    overlap = (torch.minimum(y1[:, None], bottom[None]) - torch.maximum(y0[:, None], top[None])).clamp(min=0.0)
    coverage = overlap / (bottom - top)[None] * covered_width[:, None]  # [N, H]
    has_box = (boxes >= 0).all(dim=1)
    return torch.where(has_box[:, None], coverage, torch.zeros_like(coverage))


def visibility_targets(
    boxes: Tensor | None, occluded: Tensor, occ_type: Tensor | None, input_size: Sequence[int], num_stripes: int
) -> Tensor:
    """The per-stripe visible fraction each image is trained towards, NaN where unknown.

    Args:
        boxes: shape [N, 4], occluder boxes in input pixels, -1s when none (``Batch.boxes``);
            None = no box known for any image (occluded rows get no target).
        occluded: shape [N] bool.
        occ_type: shape [N] occluder codes, or None; rows of type ``real`` get no target.
        input_size: (H_in, W_in) of the network input the boxes refer to.
        num_stripes: H.

    Returns:
        shape [N, H] float32: 1 on clean rows, 1 - :func:`stripe_coverage` on occluded rows
        with a box, NaN on rows without a target (see the module docstring).
    """
    occluded = occluded.to(torch.bool)
    n = occluded.shape[0]
    device = occluded.device
    if boxes is None:
        boxes = torch.full((n, 4), -1.0, device=device)
    boxes = boxes.to(device)
    visible = 1.0 - stripe_coverage(boxes, input_size, num_stripes)
    known = ~occluded | (boxes >= 0).all(dim=1)
    if occ_type is not None and REAL_OCC_TYPE is not None:
        known &= occ_type.to(device) != REAL_OCC_TYPE
    visible = torch.where(occluded[:, None], visible, torch.ones_like(visible))
    return torch.where(known[:, None], visible, torch.full_like(visible, float("nan")))


def visibility_loss(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Binary cross-entropy of the visibility logits against the visible fractions.

    Args:
        logits: shape [N, H], one logit per stripe (sigmoid = predicted visible fraction).
        target: shape [N, H] in [0, 1], NaN on rows (or stripes) without a target.

    Returns:
        loss: scalar, mean of BCE(logit, target) over the known entries; 0 (still attached to
            ``logits``, so that every parameter of the head takes part in the graph) when no
            entry is known.
        error: scalar, no grad: mean |sigmoid(logit) - target| over the known entries (0 when none).
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    known = ~torch.isnan(target)
    safe_target = torch.where(known, target, torch.zeros_like(target))
    per_entry = F.binary_cross_entropy_with_logits(logits, safe_target, reduction="none")
    count = known.sum()
    denominator = count.clamp(min=1).to(per_entry.dtype)
    loss = torch.where(known, per_entry, torch.zeros_like(per_entry)).sum() / denominator
    with torch.no_grad():
        error = torch.where(known, (torch.sigmoid(logits) - safe_target).abs(), torch.zeros_like(per_entry)).sum()
        error = error / denominator
    return loss, error
