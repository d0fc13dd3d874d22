"""Optimiser, learning-rate schedule and mixed precision of a training run.

* :func:`learning_rate`: the rate of an epoch, a pure function of the config and the epoch
  index (linear warm-up, then step decay or cosine), so a resumed run continues exactly.
* :func:`build_optimizer` / :func:`set_lr`: Adam or SGD over the trainable parameters.
* :class:`AmpSettings` / :func:`resolve_amp`: autocast on CUDA (bf16 when supported, else
  fp16 with a GradScaler), float32 on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from reid.engine.config import TrainConfig

logger = logging.getLogger(__name__)


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


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively on this CPU (AVX512-BF16 or AMX); without them
    bf16 kernels are emulated, and a bf16-autocast training step of resnet18 or MobileNetV2
    measured about 4x slower than float32 on an AVX2-only EPYC (benchmarks/README.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_amp(amp: bool | None, device: torch.device) -> AmpSettings:
    """Mixed precision on CUDA (bf16 when supported, else fp16 + GradScaler; on by default).

    On the CPU it is off by default; ``--amp`` turns on bfloat16 autocast where the CPU runs
    bf16 natively (:func:`cpu_has_native_bf16`), and where it does not says so in one line and
    trains in float32 (emulated bf16 is several times slower, never faster).
    """
    if device.type != "cuda":
        if not amp:
            return AmpSettings(device.type)
        if device.type == "cpu" and cpu_has_native_bf16():
            return AmpSettings("cpu", torch.bfloat16)
        logger.warning("--amp: this %s has no native bfloat16 (no AVX512-BF16 or AMX), where bf16 autocast is "
                       "several times slower than float32; training in float32", device.type)
        return AmpSettings(device.type)
    if amp is False:
        return AmpSettings("cuda")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AmpSettings("cuda", dtype)
