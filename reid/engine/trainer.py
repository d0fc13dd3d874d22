"""``reid train``: AlignedReID + OBC multi-task training on the frozen splits of an HDF5 file.

One call of :func:`train` = one run folder (layout in :mod:`reid.engine.runs`)::

    runs/<name>/config.json    written at the start: {"train": TrainConfig, "model": ModelConfig,
                               "dataset_fingerprint", "world_size", "package_version", "started"}
    runs/<name>/metrics.jsonl  one JSON object per epoch (see "Metrics" below)
    runs/<name>/last.pt        every epoch (and on Ctrl-C), atomically, with optimizer state
    runs/<name>/best.pt        the best validated weights (only when validation ran)
    runs/<name>/curves.png     redrawn every epoch

Decisions (documented for review):

* **Epoch**: one pass of the P x K sampler (:mod:`reid.data.sampler`), optionally cut to
  ``max_steps_per_epoch`` steps. The learning rate is a pure function of the epoch index
  (:func:`learning_rate`): linear warm-up from ``warmup_factor * lr`` over ``warmup_epochs``,
  then step decay (x ``gamma`` at each milestone) or cosine to 0.
* **Determinism / resume**: augmentation draws are keyed by (seed, epoch, slot) in the data
  pipeline, the sampler's permutation by (seed, epoch), and at the start of every epoch the
  torch / numpy / python generators are reseeded from (seed, epoch, rank). So an epoch's
  randomness never depends on what ran before it, and ``--resume`` (from an epoch end, or
  from a Ctrl-C in mid-epoch, where the already-trained batches of that epoch are skipped)
  reproduces an uninterrupted run exactly on the CPU. The checkpoint also stores the RNG
  states (torch, CUDA, numpy, python as tensors / plain values), restored on resume.
* **AMP** (CUDA only; ``amp=None`` means on with CUDA): bfloat16 autocast without a
  GradScaler when the GPU supports bf16 (Ampere and newer: same exponent range as float32,
  so no loss scaling), else float16 autocast with ``torch.amp.GradScaler``. The losses run
  in float32 whatever the autocast (see :mod:`reid.losses.multitask`). On CUDA the network
  also runs channels-last and cuDNN autotunes (not bit-reproducible; CPU runs are).
* **Best checkpoint**: the validation score is the mean of the clean-query mAP and the mean
  mAP over the occluded query sets (one per occluder type), i.e. clean and occluded weigh
  equally, which is the project's goal (robust to occlusion without losing clean accuracy).
  Validation runs every ``eval_every`` epochs and after the last epoch (``eval_every=0``:
  never; then there is no best.pt and evaluators fall back to last.pt).
* **alpha = 1** (plain AlignedReID): the OBC head is frozen (``requires_grad=False``), so no
  optimiser touches it (not even weight decay) and DDP does not see it as unused.
* **Divergence**: the loss values (averaged over DDP ranks, so every rank agrees) are checked
  before the backward pass; a NaN or infinity raises :class:`TrainingDiverged` naming the step
  and the values, and the weights are not updated with it.
* **Ctrl-C**: the optimiser step is shielded (a SIGINT during backward/step is deferred until
  the step is complete), then last.pt is written with the position inside the epoch and
  :func:`train` returns a result with ``interrupted=True`` and a message saying how to resume.

Metrics (one JSON line per epoch)::

    {"epoch": 3, "step": 600, "lr": 3.5e-4, "images_per_s": 412.0, "seconds": 31.0, "cpu_seconds": 58.0,
     "total": .., "triplet_global": .., "triplet_local": .., "id": .., "obc": ..,
     "obc_acc": .., "id_acc": .., "violation_fraction": ..,
     "val": {"queries": {"clean": {"R1": .., "mAP": ..}, "occluded:mean": {...}}, "score": ..}}

``val`` appears only on validated epochs; rates are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_write_bytes, atomic_write_json
from common.device import resolve_device
from common.errors import BadInputError
from occsim.store import StoreInfo, read_store
from reid import __version__
from reid.data.datasets import TRAIN_ON
from reid.data.loaders import build_train_loader
from reid.data.transforms import TransformConfig
from reid.engine import distributed as D
from reid.engine.curves import plot_run_curves, read_metrics
from reid.engine.runs import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    CURVES_FILE,
    EVAL_CMC_PNG,
    EVAL_JSON,
    LAST_CHECKPOINT,
    METRICS_FILE,
)
from reid.losses import LossBreakdown, LossConfig, compute_losses
from reid.losses.visibility import visibility_targets
from reid.models.aligned import ARCH_DIMS, ModelConfig, build_model
from reid.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, unwrap_model

logger = logging.getLogger(__name__)

#: Loss-breakdown fields logged per step and per epoch, in this order.
LOGGED_LOSSES: tuple[str, ...] = (
    "total", "triplet_global", "triplet_local", "id", "obc", "obc_acc", "id_acc", "violation_fraction",
    "visibility",
)
#: Config keys that may change when resuming a run (they do not change what is learned).
RESUME_MUTABLE: frozenset[str] = frozenset(
    {"epochs", "eval_every", "eval_queries", "workers", "device", "resume", "force", "out", "data"}
)
#: Files of a run folder that ``force`` removes before starting over.
RUN_FILES: tuple[str, ...] = (
    CONFIG_FILE, METRICS_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, CURVES_FILE, EVAL_JSON, EVAL_CMC_PNG,
)
SCHEDULES: tuple[str, ...] = ("step", "cosine")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class TrainingDiverged(BadInputError):
    """A NaN or infinite loss: the run stops (the CLI prints one line and exits with 2)."""


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (written to config.json and every checkpoint).

    Attributes:
        data: the occluded-reid HDF5 file.
        out: the run folder.
        arch: torchvision ResNet (resnet18/34/50/101).
        pretrained: "imagenet", a path to a torchvision state dict, or None (random init).
        epochs: epochs to train (see the module doc for what an epoch is).
        batch_p, batch_k: identities per batch and images per identity, per process; with
            ``train_on="both"`` a batch holds 2 * P * K images (each clean image and its copy).
        optimizer: "adam" (default, lr 3.5e-4 as in BoT) or "sgd" (momentum, Nesterov).
        lr: base learning rate; momentum: SGD momentum; weight_decay: L2 on every parameter.
        warmup_epochs, warmup_factor: linear warm-up from ``warmup_factor * lr`` to ``lr``.
        schedule: "step" (x ``gamma`` at each of ``milestones``, in epochs) or "cosine".
        alpha: L = alpha * L_T + (1 - alpha) * L_OBC; 1 = plain AlignedReID.
        margin: TriHard margin; label_smoothing: identity cross-entropy smoothing.
        train_on: "clean", "occluded", "both" (every clean image with one of its occluded
            copies in the same batch) or "augment" (occlusion as a per-image augmentation: each
            clean image is read as one of its occluded copies with probability ``occlusion_p``).
        occlusion_p: "augment": the probability (after the ramp) that an image is read occluded.
        occlusion_ramp_epochs: "augment": ramp the probability linearly from 0 at the first
            epoch to ``occlusion_p`` at this (0-based) epoch; 0 = no ramp.
        exclude_twin_positive: an image's own clean/occluded twin is never its mined positive.
        clean_anchors_only: occluded images are not TriHard anchors (they still feed ID and OBC).
        retrieval_feature: "global" (AlignedReID) or "bn" (BoT's BNNeck feature) for evaluation.
        num_stripes: local stripes (AlignedReID: 8 at 256x128); at most the feature map's height
            (input height / 16 with ``last_stride=1``, / 32 with 2) makes sense.
        visibility_weight: weight of the per-stripe visibility loss (a term of its own, see
            :mod:`reid.losses.multitask`); > 0 adds the visibility head to the model
            (``ModelConfig.visibility_head``), 0 = no head (the default).
        train_occluders: occluder types whose copies are trained on ("occluded", "both");
            empty = every type in the file.
        input_size: network input (H, W).
        last_stride: 1 (BoT) or 2 (original AlignedReID).
        random_erasing: Random Erasing augmentation.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        amp: mixed precision; None = on with CUDA (see the module doc for the dtype).
        workers: data-loader processes.
        seed: seeds the model initialisation, the sampler and the augmentation.
        eval_every: validate every N epochs and after the last (0 = never).
        eval_queries: query sets for validation (see :func:`reid.engine.evaluator.expand_queries`).
        resume: continue the run in ``out`` from its last.pt.
        force: delete the run in ``out`` and start over.
        max_steps_per_epoch: cut every epoch to this many steps (tiny runs, demos).
    """

    data: str = "data/occluded.h5"
    out: str = "runs/default"
    arch: str = "resnet50"
    pretrained: str | None = "imagenet"
    epochs: int = 120
    batch_p: int = 16
    batch_k: int = 4
    optimizer: str = "adam"
    lr: float = 3.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    schedule: str = "step"
    milestones: tuple[int, ...] = (40, 70)
    gamma: float = 0.1
    alpha: float = 0.8
    margin: float = 0.3
    label_smoothing: float = 0.1
    train_on: str = "both"
    train_occluders: tuple[str, ...] = ()
    occlusion_p: float = 0.5
    occlusion_ramp_epochs: int = 0
    exclude_twin_positive: bool = False
    clean_anchors_only: bool = False
    retrieval_feature: str = "global"
    num_stripes: int = 8
    visibility_weight: float = 0.0
    input_size: tuple[int, int] = (256, 128)
    last_stride: int = 1
    random_erasing: bool = False
    device: str = "auto"
    amp: bool | None = None
    workers: int = 4
    seed: int = 0
    eval_every: int = 10
    eval_queries: tuple[str, ...] = ("clean", "occluded")
    resume: bool = False
    force: bool = False
    max_steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        # Normalise JSON-ish values (lists, Paths) so that equal configs compare equal.
        object.__setattr__(self, "data", str(self.data))
        object.__setattr__(self, "out", str(self.out))
        if self.pretrained is not None:
            object.__setattr__(self, "pretrained", str(self.pretrained))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "eval_queries", tuple(str(q) for q in self.eval_queries))
        object.__setattr__(self, "train_occluders", tuple(str(t) for t in self.train_occluders))
        self.validate()

    def validate(self) -> None:
        """Raise BadInputError for option values no run could use."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise BadInputError(message)

        need(self.arch in ARCH_DIMS, f"--arch {self.arch!r}: use one of {', '.join(ARCH_DIMS)}")
        need(self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1")
        need(self.batch_p >= 2, f"--batch-p {self.batch_p}: TriHard needs at least 2 identities per batch")
        need(self.batch_k >= 1, f"--batch-k {self.batch_k}: must be at least 1")
        need(self.optimizer in OPTIMIZERS, f"--optimizer {self.optimizer!r}: use adam or sgd")
        need(self.lr > 0 and math.isfinite(self.lr), f"--lr {self.lr}: must be a positive number")
        need(self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0")
        need(self.warmup_epochs >= 0, f"--warmup-epochs {self.warmup_epochs}: must be >= 0")
        need(0 < self.warmup_factor <= 1, f"warmup_factor {self.warmup_factor}: must be in (0, 1]")
        need(self.schedule in SCHEDULES, f"--schedule {self.schedule!r}: use step or cosine")
        need(all(m > 0 for m in self.milestones), f"--milestones {list(self.milestones)}: epochs must be positive")
        need(0 < self.gamma <= 1, f"gamma {self.gamma}: must be in (0, 1]")
        need(0.0 <= self.alpha <= 1.0, f"--alpha {self.alpha}: must be between 0 and 1 (1 = plain AlignedReID)")
        need(self.margin > 0, f"--margin {self.margin}: must be > 0")
        need(0.0 <= self.label_smoothing < 1.0, f"--label-smoothing {self.label_smoothing}: must be in [0, 1)")
        need(self.train_on in TRAIN_ON, f"--train-on {self.train_on!r}: use one of {', '.join(TRAIN_ON)}")
        need(0.0 <= self.occlusion_p <= 1.0, f"--occlusion-p {self.occlusion_p}: must be between 0 and 1")
        need(self.occlusion_ramp_epochs >= 0,
             f"--occlusion-ramp-epochs {self.occlusion_ramp_epochs}: must be >= 0 (0 = no ramp)")
        need(not (self.train_occluders and self.train_on == "clean"),
             "--train-occluders: applies to --train-on occluded or both; drop it with --train-on clean")
        need(len(self.input_size) == 2 and min(self.input_size) >= 16,
             f"--size {'x'.join(map(str, self.input_size))}: both sides must be at least 16 pixels")
        need(self.last_stride in (1, 2), f"--last-stride {self.last_stride}: must be 1 or 2")
        need(self.num_stripes >= 1, f"--stripes {self.num_stripes}: must be at least 1")
        need(self.visibility_weight >= 0 and math.isfinite(self.visibility_weight),
             f"--visibility-weight {self.visibility_weight}: must be >= 0 (0 = no visibility head)")
        need(self.device in DEVICES, f"--device {self.device!r}: use auto, cpu or cuda")
        need(self.workers >= 0, f"--workers {self.workers}: must be >= 0")
        need(self.eval_every >= 0, f"--eval-every {self.eval_every}: must be >= 0 (0 = never)")
        need(bool(self.eval_queries), "eval_queries: give at least one query set")
        need(not (self.resume and self.force), "--resume and --force: pass one of them, not both")
        need(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             f"--max-steps-per-epoch {self.max_steps_per_epoch}: must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``weights_only``-safe dict (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise BadInputError (another version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"training config: unknown keys {unknown}; it was written by another version")
        return cls(**data)

    @property
    def loss_config(self) -> LossConfig:
        return LossConfig(alpha=self.alpha, margin=self.margin, label_smoothing=self.label_smoothing,
                          exclude_twin_positive=self.exclude_twin_positive,
                          clean_anchors_only=self.clean_anchors_only,
                          visibility_weight=self.visibility_weight)

    @property
    def transform_config(self) -> TransformConfig:
        return TransformConfig(size=self.input_size, random_erasing=self.random_erasing)


def config_differences(given: TrainConfig, recorded: dict[str, Any]) -> list[str]:
    """Keys (outside :data:`RESUME_MUTABLE`) whose value in ``given`` differs from ``recorded``.

    ``recorded`` is a :meth:`TrainConfig.to_dict` from a checkpoint; a key it lacks (written
    before that option existed) counts as its default. Returns "key: recorded -> given"
    strings, sorted by key.
    """
    mine = given.to_dict()
    defaults = TrainConfig().to_dict()
    out = []
    for key in sorted(mine):
        if key in RESUME_MUTABLE:
            continue
        theirs = recorded.get(key, defaults[key])
        if isinstance(theirs, tuple):
            theirs = list(theirs)
        if theirs != mine[key]:
            out.append(f"{key}: {theirs!r} -> {mine[key]!r}")
    return out


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``: warm-up, then step or cosine decay.

    Warm-up: ``lr * (f + (1 - f) * epoch / warmup_epochs)`` for epoch < warmup_epochs.
    Step: ``lr * gamma ** (number of milestones <= epoch)`` (milestones count 0-based epochs,
    like ``torch.optim.lr_scheduler.MultiStepLR``). Cosine:
    ``lr * 0.5 * (1 + cos(pi * (epoch - w) / (epochs - w)))`` after the warm-up.
    """
    base = config.lr
    if epoch < config.warmup_epochs:
        f = config.warmup_factor
        return base * (f + (1.0 - f) * epoch / config.warmup_epochs)
    if config.schedule == "step":
        return base * config.gamma ** sum(1 for m in config.milestones if epoch >= m)
    span = max(1, config.epochs - config.warmup_epochs)
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - config.warmup_epochs) / span))


# ------------------------------------------------------------------- device and AMP


@dataclass(frozen=True)
class AmpSettings:
    """Autocast for the forward pass. ``dtype`` None = full float32."""

    device_type: str
    dtype: torch.dtype | None = None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    @property
    def needs_scaler(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 ones do not."""
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_amp(amp: bool | None, device: torch.device) -> AmpSettings:
    """Mixed precision on CUDA (bf16 when supported, else fp16 + GradScaler); off on the CPU."""
    if device.type != "cuda":
        if amp:
            logger.warning("--amp applies to CUDA only; training in float32 on %s", device.type)
        return AmpSettings(device.type)
    if amp is False:
        return AmpSettings("cuda")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AmpSettings("cuda", dtype)


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


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD over the parameters that require gradients (a frozen OBC head is left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.momentum > 0)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------ randomness


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 32-bit seed that depends only on (seed, epoch, rank)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank), 0x7A1]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's legacy global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states as tensors and plain values (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": {"version": int(py_version), "state": [int(v) for v in py_state], "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state` (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["name"], s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
    if "python" in state:
        s = state["python"]
        random.setstate((s["version"], tuple(s["state"]), s["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ Ctrl-C guard


class InterruptGuard:
    """Turns SIGINT into KeyboardInterrupt, but never in the middle of an optimiser step.

    Inside :meth:`critical` a SIGINT is remembered and raised as KeyboardInterrupt when the
    block ends, so a checkpoint never holds half-updated weights. Outside the main thread
    (where signal handlers cannot be installed) it does nothing.
    """

    def __init__(self) -> None:
        self._critical = False
        self._pending = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._critical:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


# ------------------------------------------------------------------ run folder


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        last_checkpoint: runs/<name>/last.pt.
        best_checkpoint: runs/<name>/best.pt, or None when no validation ran.
        epochs_completed: epochs finished (those of earlier sessions of a resumed run included).
        global_step: optimiser steps taken in all.
        final_metrics: the last epoch's metrics.jsonl record (empty when no epoch finished).
        best_score: the best validation score (mean of clean and occluded mAP), or None.
        interrupted: stopped by Ctrl-C (last.pt holds the position inside the epoch).
        message: for an interrupted run, what happened and how to resume.
        model: the trained network (unwrapped from DDP, on the training device); on every
            rank identical parameters and buffers after a distributed run.
    """

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    epochs_completed: int
    global_step: int
    final_metrics: dict[str, Any] = field(default_factory=dict)
    best_score: float | None = None
    interrupted: bool = False
    message: str = ""
    model: nn.Module | None = field(default=None, repr=False, compare=False)


def _holds_run(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (CONFIG_FILE, LAST_CHECKPOINT, METRICS_FILE))


def prepare_run_dir(config: TrainConfig) -> None:
    """Check (and with ``force`` clear) the run folder. Writes nothing else.

    Raises:
        BadInputError: ``out`` is a file; it holds a run and neither --resume nor --force was
            given; --resume without a last.pt to resume from.
    """
    run_dir = Path(config.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInputError(f"{run_dir}: is a file, not a run folder; choose another --out")
    if config.resume:
        if not (run_dir / LAST_CHECKPOINT).is_file():
            raise BadInputError(
                f"{run_dir}: nothing to resume (no {LAST_CHECKPOINT}); drop --resume to start a new run"
                + (" (add --force to replace what is there)" if _holds_run(run_dir) else "")
            )
        return
    if _holds_run(run_dir):
        if not config.force:
            raise BadInputError(f"{run_dir} already holds a run; pass --resume to continue it or --force to start over")
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        logger.info("--force: removed the previous run's files from %s", run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc}); choose another --out") from exc
    if not os.access(run_dir, os.W_OK):
        raise BadInputError(f"{run_dir}: the run folder is not writable; choose another --out")


def _rewrite_metrics(path: Path, keep_epochs: int) -> None:
    """Keep only the records of the first ``keep_epochs`` epochs (a resumed run redoes the rest)."""
    records = [r for r in read_metrics(path) if int(r.get("epoch", 0)) <= keep_epochs]
    atomic_write_bytes(path, "".join(json.dumps(record) + "\n" for record in records).encode(), "metrics")


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------ validation


def validation_score(queries: dict[str, dict[str, float]]) -> float:
    """Mean of the clean mAP and of the mean mAP over occluded query sets (whichever exist).

    Args:
        queries: {"clean": {"mAP": ..}, "occluded:mean": {"mAP": ..}, ...}.
    """
    clean = [v["mAP"] for k, v in queries.items() if k == "clean"]
    occluded = [v["mAP"] for k, v in queries.items() if k.startswith("occluded")]
    parts = [float(np.mean(group)) for group in (clean, occluded) if group]
    return float(np.mean(parts)) if parts else float("nan")


def _validate(model: nn.Module, config: TrainConfig, store: StoreInfo, device: torch.device, amp: AmpSettings) -> dict[str, Any]:
    from reid.engine.evaluator import evaluate_model

    report = evaluate_model(
        unwrap_model(model), config.data, queries=config.eval_queries, device=device,
        input_size=config.input_size, amp=amp.enabled, workers=config.workers, store=store,
    )
    queries = {row.name: {"R1": row.r1, "mAP": row.mAP} for row in report.rows}
    return {"queries": queries, "score": validation_score(queries)}


# ------------------------------------------------------------------------ train


StepHook = Callable[[int, int, int], None]


def _prepare_on_main(config: TrainConfig, info: D.DistInfo) -> None:
    """Run-folder checks on rank 0, the verdict shared so every rank fails the same way."""
    error = None
    if info.is_main:
        try:
            prepare_run_dir(config)
        except BadInputError as exc:
            error = str(exc)
    error = D.broadcast_object(error, info)
    if error is not None:
        raise BadInputError(str(error))


def _load_resume(config: TrainConfig, model_config: ModelConfig, store: StoreInfo) -> Checkpoint:
    path = Path(config.out) / LAST_CHECKPOINT
    checkpoint = load_checkpoint(path, map_location="cpu")
    recorded = checkpoint.extra.get("config")
    if not isinstance(recorded, dict):
        raise BadInputError(f"{path}: records no training configuration; start a new run with --force")
    diffs = config_differences(config, recorded)
    if checkpoint.config != model_config:
        diffs.append(f"model: {checkpoint.config.to_dict()} -> {model_config.to_dict()}")
    if diffs:
        raise BadInputError(
            f"{config.out}: --resume with a different configuration ({'; '.join(diffs)}); "
            "use the options of the original run (only --epochs, --eval-every, --eval-queries, --workers, --device "
            "and the data file's path may change) "
            "or start a new run with --force or another --out"
        )
    if checkpoint.dataset_fingerprint != store.fingerprint:
        raise BadInputError(
            f"{config.data}: fingerprint {store.fingerprint[:12]} differs from the {checkpoint.dataset_fingerprint[:12]} "
            f"the run in {config.out} was trained on; resume with the original data file"
        )
    if checkpoint.optimizer_state is None:
        raise BadInputError(f"{path}: holds no optimizer state, so it cannot be resumed; start over with --force")
    return checkpoint


def _resume_hint(config: TrainConfig) -> str:
    return f"reid train --resume --out {config.out} (with the same options)"


def train(config: TrainConfig, step_hook: StepHook | None = None) -> TrainResult:
    """Train (or resume) one run; see the module docstring for the behaviour.

    Works unchanged under ``torchrun`` (DistributedDataParallel; only rank 0 writes).

    Args:
        config: the run.
        step_hook: called after every optimiser step as ``hook(global_step, epoch,
            step_in_epoch)`` (0-based epoch, 1-based steps); tests use it to simulate Ctrl-C.

    Raises:
        BadInputError: data file not ours or without a train split, P larger than the number
            of identities, a run folder holding another run, a resume with another config.
        TrainingDiverged: a NaN or infinite loss (a BadInputError subclass).
    """
    device = resolve_device(config.device)
    info = D.init_distributed(device)
    try:
        return _train(config, D.process_device(device, info), info, step_hook)
    finally:
        D.cleanup_distributed(info)


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


def _train(config: TrainConfig, device: torch.device, info: D.DistInfo, step_hook: StepHook | None) -> TrainResult:
    return _Run(config, device, info, step_hook).run()


def _fmt_losses(values: dict[str, float]) -> str:
    return ", ".join(f"{name}={values[name]:.4g}" for name in LOGGED_LOSSES if name in values)


class _Run:
    """One training session of one process: set-up, the epoch loop, checkpoints, Ctrl-C.

    Position bookkeeping: ``epoch`` is the 0-based epoch in progress (or the next one) and
    ``step_in_epoch`` the number of its steps already applied to the weights; a checkpoint
    records both, and a resume skips those steps of that epoch.
    """

    def __init__(self, config: TrainConfig, device: torch.device, info: D.DistInfo, step_hook: StepHook | None) -> None:
        self.config, self.device, self.info, self.step_hook = config, device, info, step_hook
        self.run_dir = Path(config.out)
        self.last_path = self.run_dir / LAST_CHECKPOINT
        self.best_path = self.run_dir / BEST_CHECKPOINT

        self.store = read_store(config.data)  # BadInputError: missing, not ours, no train split, damaged
        labels = self.store.splits["train"].label
        if labels is None or len(labels) == 0:
            raise BadInputError(f"{config.data}: has no train split (a test-only benchmark such as Occluded-REID, "
                                f"source {self.store.source}); train on another file (e.g. Market-1501) and "
                                f"evaluate here with `reid eval --data {config.data} --checkpoint RUN/last.pt`")
        if config.eval_every > 0:
            from reid.engine.evaluator import expand_queries

            try:  # a bad query set fails before training, not after the first epochs
                expand_queries(config.eval_queries, self.store)
            except BadInputError as exc:
                raise BadInputError(f"--eval-queries {','.join(config.eval_queries)}: {exc}") from exc
        # The loader checks the batch shape against the data (P identities, occluder types) and
        # writes nothing: build it first so that a bad option leaves no run folder behind.
        self.loader = build_train_loader(
            config.data, config.train_on, config.batch_p, config.batch_k, config.transform_config,
            workers=config.workers, seed=config.seed, rank=info.rank, world_size=info.world_size,
            occluder_types=config.train_occluders,
            occlusion_p=config.occlusion_p, occlusion_ramp_epochs=config.occlusion_ramp_epochs,
        )
        _prepare_on_main(config, info)
        self.steps_per_epoch = len(self.loader)
        if config.max_steps_per_epoch is not None:
            self.steps_per_epoch = min(self.steps_per_epoch, config.max_steps_per_epoch)
        self.model_config = ModelConfig(num_classes=int(labels.max()) + 1, arch=config.arch, last_stride=config.last_stride,
                                        retrieval_feature=config.retrieval_feature, num_stripes=config.num_stripes,
                                        visibility_head=config.visibility_weight > 0)
        self.loss_config = config.loss_config
        self.amp = resolve_amp(config.amp, device)
        checkpoint = _load_resume(config, self.model_config, self.store) if config.resume else None

        seed_everything(config.seed)  # the model initialisation
        model = build_model(self.model_config, pretrained=None if checkpoint is not None else config.pretrained)
        if checkpoint is not None:
            model.load_state_dict(checkpoint.state_dict, strict=True)
        if config.alpha == 1.0:
            model.obc_head.requires_grad_(False)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            model = model.to(device, memory_format=torch.channels_last)
        else:
            model = model.to(device)
        self.model = model
        self.optimizer = build_optimizer(model, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp.needs_scaler) if device.type == "cuda" else None
        self.ddp_model = D.wrap_model(model, device, info, find_unused_parameters=config.alpha == 0.0)

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_score: float | None = None
        self.last_record: dict[str, Any] = {}
        self.pending_record: dict[str, Any] | None = None  # a finished epoch not yet in metrics.jsonl
        self.tally: EpochTally | None = None  # the epoch in progress (restored when resuming mid-epoch)
        if checkpoint is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
            if self.scaler is not None and checkpoint.scaler_state:
                self.scaler.load_state_dict(checkpoint.scaler_state)
            if checkpoint.rng_state:
                set_rng_state(checkpoint.rng_state)
            extra = checkpoint.extra
            self.epoch, self.step_in_epoch = int(extra["epoch"]), int(extra.get("step_in_epoch", 0))
            self.global_step = int(extra.get("global_step", 0))
            if self.step_in_epoch > 0 and isinstance(extra.get("epoch_tally"), dict):
                self.tally = EpochTally.from_dict(extra["epoch_tally"])
            best = extra.get("best_score")
            self.best_score = float(best) if isinstance(best, (int, float)) else None
            recorded_world = int(extra.get("world_size", 1))
            if recorded_world != info.world_size and info.is_main:
                logger.warning("resuming a %d-process run with %d processes: the global batch changes",
                               recorded_world, info.world_size)
        self._write_start()

    # -------------------------------------------------------------------- files

    def _write_start(self) -> None:
        config, info = self.config, self.info
        if info.is_main:
            atomic_write_json(self.run_dir / CONFIG_FILE, {
                "train": config.to_dict(), "model": self.model_config.to_dict(),
                "dataset_fingerprint": self.store.fingerprint, "world_size": info.world_size,
                "package_version": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            })
            if config.resume:
                _rewrite_metrics(self.run_dir / METRICS_FILE, self.epoch)
                self.last_record = next(iter(read_metrics(self.run_dir / METRICS_FILE)[-1:]), {})
                logger.info("resuming %s at epoch %d, step %d", self.run_dir, self.epoch + 1, self.step_in_epoch)
            per_process = config.batch_p * config.batch_k * (2 if config.train_on == "both" else 1)
            logger.info(
                "training %s on %s (train-on %s, %d classes): %d epochs x %d steps, %d images per step and process, "
                "%d process(es), device %s, amp %s -> %s",
                config.arch, config.data, config.train_on, self.model_config.num_classes, config.epochs,
                self.steps_per_epoch, per_process, info.world_size, self.device, self.amp.name, self.run_dir,
            )
        D.barrier(info)

    def _save(self, path: Path, with_optimizer: bool = True) -> None:
        """Checkpoint at the current position (rank 0 only)."""
        config = self.config
        extra = {
            "config": config.to_dict(), "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step, "input_size": list(config.input_size), "best_score": self.best_score,
            "world_size": self.info.world_size,
            "metrics": {k: v for k, v in self.last_record.items() if isinstance(v, (int, float))},
        }
        if self.step_in_epoch > 0 and self.tally is not None:
            extra["epoch_tally"] = self.tally.to_dict()
        scaler_state = None
        if with_optimizer and self.scaler is not None and self.scaler.is_enabled():
            scaler_state = self.scaler.state_dict()
        save_checkpoint(
            path, self.model, self.model_config, self.store.fingerprint, extra=extra,
            optimizer_state=self.optimizer.state_dict() if with_optimizer else None,
            scheduler_state={"epoch": self.epoch, "lr": learning_rate(config, min(self.epoch, config.epochs - 1))},
            scaler_state=scaler_state, rng_state=rng_state(),
        )

    def _log_record(self, record: dict[str, Any]) -> None:
        _append_metrics(self.run_dir / METRICS_FILE, record)
        plot_run_curves(self.run_dir / METRICS_FILE, self.run_dir / CURVES_FILE, title=self.run_dir.name)

    # --------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        config, info = self.config, self.info
        if self.epoch >= config.epochs and info.is_main:
            logger.info("%s already trained %d epochs; raise --epochs to train further", self.run_dir, self.epoch)
        with InterruptGuard() as guard:
            try:
                while self.epoch < config.epochs:
                    record = self._run_epoch(guard)
                    self.epoch, self.step_in_epoch = self.epoch + 1, 0
                    self.pending_record = record
                    self._end_epoch(record)
                    self.pending_record = None
            except KeyboardInterrupt:
                return self._interrupted()
        D.broadcast_buffers(self.model, info)
        return self._result()

    def _result(self, interrupted: bool = False, message: str = "") -> TrainResult:
        return TrainResult(
            run_dir=self.run_dir, last_checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.is_file() else None,
            epochs_completed=self.epoch, global_step=self.global_step, final_metrics=self.last_record,
            best_score=self.best_score, interrupted=interrupted, message=message, model=self.model,
        )

    def _end_epoch(self, record: dict[str, Any]) -> None:
        config, info = self.config, self.info
        if config.eval_every > 0 and (self.epoch % config.eval_every == 0 or self.epoch == config.epochs):
            # Plain BN under gloo keeps per-rank statistics: validate with rank 0's, as saved.
            D.broadcast_buffers(self.model, info)
            if info.is_main:
                record["val"] = _validate(self.model, config, self.store, self.device, self.amp)
            D.barrier(info)
        self.last_record = record
        if info.is_main:
            score = record.get("val", {}).get("score")
            improved = score is not None and math.isfinite(score) and (self.best_score is None or score > self.best_score)
            if improved:
                self.best_score = float(score)
            self._save(self.last_path)
            if improved:
                self._save(self.best_path, with_optimizer=False)
            self._log_record(record)
            self.pending_record = None
            _log_epoch(record, config.epochs, improved)
        D.barrier(info)

    def _run_epoch(self, guard: InterruptGuard) -> dict[str, Any]:
        """Train epoch ``self.epoch`` from step ``self.step_in_epoch``; returns its metrics record."""
        from tqdm.auto import tqdm

        config, info, device = self.config, self.info, self.device
        epoch, skip = self.epoch, self.step_in_epoch
        self.loader.batch_sampler.set_epoch(epoch)
        seed_everything(epoch_seed(config.seed, epoch, info.rank))
        lr = learning_rate(config, epoch)
        set_lr(self.optimizer, lr)
        self.ddp_model.train()
        if skip == 0 or self.tally is None:
            self.tally = EpochTally.empty()
        tally = self.tally
        bar = tqdm(total=self.steps_per_epoch, initial=skip, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=None if info.is_main else True, leave=False, dynamic_ncols=True)
        last, last_cpu = time.perf_counter(), time.process_time()
        batches = iter(self.loader)
        try:
            for index, batch in enumerate(itertools.islice(batches, self.steps_per_epoch)):
                if index < skip:  # a resumed epoch: these steps are already in the weights
                    last, last_cpu = time.perf_counter(), time.process_time()
                    continue
                batch = batch.to(device, non_blocking=True)
                inputs = batch.images
                if device.type == "cuda":
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                losses = forward_losses(self.ddp_model, inputs, batch.labels, batch.occluded, self.loss_config, self.amp,
                                        clean_index=batch.clean_index, boxes=batch.boxes, occ_type=batch.occ_type)
                # One small all-reduce: every rank logs the same means and stops on the same step.
                values = D.all_reduce_mean(loss_vector(losses), info).tolist()
                step = self.global_step + 1
                if not all(math.isfinite(v) for v in values):
                    raise TrainingDiverged(
                        f"{config.out}: training diverged at step {step} (epoch {epoch + 1}, batch {index + 1}): "
                        f"{_fmt_losses(dict(zip(LOGGED_LOSSES, values)))}; lower --lr (now {lr:g}) or check the data "
                        f"({config.data}); "
                        + (f"the last good checkpoint is {self.last_path}" if self.last_path.is_file()
                           else "no checkpoint was written")
                    )
                with guard.critical():
                    apply_gradients(losses.total, self.optimizer, self.scaler)
                    self.global_step, self.step_in_epoch = step, index + 1
                    now, now_cpu = time.perf_counter(), time.process_time()
                    tally.add(values, len(batch) * info.world_size, now - last, now_cpu - last_cpu)
                    last, last_cpu = now, now_cpu
                bar.update(1)
                means = tally.means()
                bar.set_postfix_str(
                    f"loss {means[0]:.3f} tri {means[1]:.3f}/{means[2]:.3f} id {means[3]:.3f} obc {means[4]:.3f}",
                    refresh=False,
                )
                if self.step_hook is not None:
                    self.step_hook(self.global_step, epoch, self.step_in_epoch)
        finally:
            bar.close()
            del batches
        self.tally = None
        record: dict[str, Any] = {"epoch": epoch + 1, "step": self.global_step, "lr": lr,
                                  "images_per_s": tally.images / tally.seconds if tally.seconds > 0 else 0.0,
                                  "seconds": tally.seconds, "cpu_seconds": tally.cpu_seconds}
        if tally.steps:
            record.update({name: float(v) for name, v in zip(LOGGED_LOSSES, tally.means())})
        return record

    def _interrupted(self) -> TrainResult:
        message = ""
        if self.info.is_main:
            if self.pending_record is not None:
                self._log_record(self.pending_record)  # the epoch finished; keep its losses
                self.pending_record = None
            self._save(self.last_path)
            where = (f"after epoch {self.epoch}" if self.step_in_epoch == 0
                     else f"in epoch {self.epoch + 1}/{self.config.epochs} after {self.step_in_epoch} step(s)")
            message = f"interrupted {where}; saved {self.last_path}; continue with: {_resume_hint(self.config)}"
            logger.warning(message)
        return self._result(interrupted=True, message=message)


def _log_epoch(record: dict[str, Any], epochs: int, improved: bool) -> None:
    text = f"epoch {record['epoch']}/{epochs}: "
    if "total" in record:
        text += (
            f"loss {record['total']:.4f} (tri {record['triplet_global']:.4f}/{record['triplet_local']:.4f}, "
            f"id {record['id']:.4f}, obc {record['obc']:.4f}, obc acc {100 * record['obc_acc']:.1f}%), "
            f"lr {record['lr']:.2e}, {record['images_per_s']:.0f} img/s"
        )
    else:  # a resumed epoch whose steps had all run before the interruption
        text += "finished"
    val = record.get("val")
    if val:
        parts = [f"{name} R1 {100 * s['R1']:.1f} mAP {100 * s['mAP']:.1f}" for name, s in val["queries"].items()]
        text += f"; val {', '.join(parts)}; score {100 * val['score']:.2f}" + (" (best)" if improved else "")
    logger.info(text)
