"""One training step and its bookkeeping: the forward pass and multi-task loss, the optimiser
step, the logged loss vector, an epoch's running tally and its log line.

Metrics (``metrics.jsonl``, one JSON line per epoch; ``val`` only on validated epochs, rates
as fractions in [0, 1])::

    {"epoch": 3, "step": 600, "lr": 3.5e-4, "images_per_s": 412.0, "seconds": 31.0, "cpu_seconds": 58.0,
     "total": .., "triplet_global": .., "triplet_local": .., "id": .., "obc": .., "obc_acc": ..,
     "id_acc": .., "violation_fraction": .., "visibility": .., "twin": ..,
     "val": {"queries": {"clean": {"R1": .., "mAP": ..}, "occluded:mean": {...}}, "score": ..}}

:mod:`reid.engine.trainer` runs these in its epoch loop; benchmarks and tests call them on a
fixed batch.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from common.errors import BadInputError
from reid.engine.optim import AmpSettings
from reid.losses import LossBreakdown, LossConfig, compute_losses
from reid.losses.visibility import visibility_targets

logger = logging.getLogger("reid.engine.trainer")  # the trainer's log lines, whichever module writes them

#: Loss-breakdown fields logged per step and per epoch, in this order.
LOGGED_LOSSES: tuple[str, ...] = (
    "total", "triplet_global", "triplet_local", "id", "obc", "obc_acc", "id_acc", "violation_fraction",
    "visibility", "twin",
)


class TrainingDiverged(BadInputError):
    """A NaN or infinite loss: the run stops (the CLI prints one line and exits with 2)."""


# --------------------------------------------------------------------- one step


def forward_losses(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    occluded: torch.Tensor,
    loss_config: LossConfig,
    amp: AmpSettings | None = None,
    clean_index: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    occ_type: torch.Tensor | None = None,
) -> LossBreakdown:
    """Forward one batch and compute the multi-task loss.

    Args:
        model: AlignedReID (possibly DDP-wrapped) in train mode.
        images: float32 normalised, shape [B, 3, H, W].
        labels: contiguous class indices, shape [B].
        occluded: shape [B] bool (True = occluded).
        clean_index: shape [B], each image's clean original (for ``exclude_twin_positive``).
        boxes, occ_type: shape [B, 4] occluder boxes in input pixels (-1s when none) and [B]
            occluder codes (``Batch.boxes``, ``Batch.occ_type``): the visibility targets of a
            model with a visibility head (without boxes, occluded images get no target).
    """
    with (amp.autocast() if amp is not None else contextlib.nullcontext()):
        output = model(images)
    target = None
    if output.has_visibility:
        num_stripes = output.visibility_logits.shape[1]
        target = visibility_targets(boxes, occluded, occ_type, tuple(images.shape[-2:]), num_stripes)
    return compute_losses(output, labels, occluded, loss_config, clean_index=clean_index, visibility_target=target)


def apply_gradients(
    total: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
) -> None:
    """Backward ``total`` and take one optimiser step (through ``scaler`` when given)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()


def loss_vector(losses: LossBreakdown) -> torch.Tensor:
    """The :data:`LOGGED_LOSSES` values, detached float32, shape [len(LOGGED_LOSSES)]."""
    return torch.stack([getattr(losses, name).detach().float().reshape(()) for name in LOGGED_LOSSES])


@dataclass
class EpochTally:
    """Running sums of one epoch's logged losses (kept across a mid-epoch Ctrl-C and resume).

    Attributes:
        sums: per :data:`LOGGED_LOSSES` name, the sum over steps of the rank-averaged value.
        steps: steps summed; images: images trained on (all ranks); seconds: time of those
            steps (data loading included, skipped batches of a resumed epoch excluded);
            cpu_seconds: this process's CPU time (all its threads) over the same steps, which
            unlike ``seconds`` hardly depends on what else the machine runs.
    """

    sums: list[float]
    steps: int = 0
    images: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @classmethod
    def empty(cls) -> EpochTally:
        return cls([0.0] * len(LOGGED_LOSSES))

    def add(self, values: list[float], images: int, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.sums = [a + b for a, b in zip(self.sums, values)]
        self.steps += 1
        self.images += images
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds

    def means(self) -> list[float]:
        return [v / self.steps for v in self.sums] if self.steps else [float("nan")] * len(self.sums)

    def to_dict(self) -> dict[str, Any]:
        return {"sums": list(self.sums), "steps": self.steps, "images": self.images, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochTally:
        sums = [float(v) for v in data.get("sums", [])]
        if len(sums) != len(LOGGED_LOSSES):
            return cls.empty()
        return cls(sums, int(data.get("steps", 0)), int(data.get("images", 0)), float(data.get("seconds", 0.0)),
                   float(data.get("cpu_seconds", 0.0)))


def fmt_losses(values: dict[str, float]) -> str:
    return ", ".join(f"{name}={values[name]:.4g}" for name in LOGGED_LOSSES if name in values)


def log_epoch(record: dict[str, Any], epochs: int, improved: bool, obc: bool, twin: bool = False) -> None:
    """One log line per epoch; ``obc``: the OBC loss and accuracy are in it (alpha < 1: the head
    trains); ``twin``: the twin-consistency loss is (its weight is > 0; metrics.jsonl has it
    whenever a batch holds twins)."""
    text = f"epoch {record['epoch']}/{epochs}: "
    if "total" in record:
        text += (
            f"loss {record['total']:.4f} (tri {record['triplet_global']:.4f}/{record['triplet_local']:.4f}, "
            f"id {record['id']:.4f}"
            + (f", obc {record['obc']:.4f}, obc acc {100 * record['obc_acc']:.1f}%" if obc else "")
            + (f", twin {record['twin']:.4f}" if twin else "") + "), "
            f"lr {record['lr']:.2e}, {record['images_per_s']:.0f} img/s"
        )
    else:  # a resumed epoch whose steps had all run before the interruption
        text += "finished"
    val = record.get("val")
    if val:
        parts = [f"{name} R1 {100 * s['R1']:.1f} mAP {100 * s['mAP']:.1f}" for name, s in val["queries"].items()]
        text += f"; val {', '.join(parts)}; score {100 * val['score']:.2f}" + (" (best)" if improved else "")
    logger.info(text)
