"""bfloat16 autocast on the CPU (reid.engine.optim.resolve_amp): on where the CPU runs bf16
natively, refused with one line (float32) where it does not; simulated both ways."""

from __future__ import annotations

import logging

import pytest
import torch

from reid.engine import optim
from reid.engine.step import forward_losses
from reid.losses import LossConfig
from reid.models import ModelConfig, build_model

CPU = torch.device("cpu")


def test_default_is_float32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: True)
    assert not optim.resolve_amp(None, CPU).enabled
    assert not optim.resolve_amp(False, CPU).enabled


def test_amp_without_native_bf16_says_why_and_stays_float32(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        amp = optim.resolve_amp(True, CPU)
    assert not amp.enabled and amp.name == "off"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no native bfloat16" in warnings[0] and "\n" not in warnings[0]


def test_amp_with_native_bf16_runs_the_forward_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optim, "cpu_has_native_bf16", lambda: True)
    amp = optim.resolve_amp(True, CPU)
    assert amp.enabled and amp.dtype == torch.bfloat16 and amp.name == "bf16" and not amp.needs_scaler
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, arch="resnet18", num_stripes=2), pretrained=None).train()
    with amp.autocast():
        assert model(torch.randn(2, 3, 64, 32)).global_feat.dtype == torch.bfloat16
    images = torch.randn(4, 3, 64, 32)
    losses = forward_losses(model, images, torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.bool),
                            LossConfig(alpha=1.0), amp=amp)
    assert losses.total.dtype == torch.float32 and torch.isfinite(losses.total)  # losses stay float32
    losses.total.backward()
    assert model.backbone.conv1.weight.grad is not None
