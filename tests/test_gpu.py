"""On a CUDA GPU (skipped without one; `scripts/gpu_check.sh` runs them with `-m gpu`): the
network computes on the GPU what it computes on the CPU, and an AMP training step learns."""

from __future__ import annotations

import pytest
import torch

from reid.losses import LossConfig
from reid.models import ModelConfig, build_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")]


def _batch(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(8, 3, 128, 64, generator=gen)
    return images.to(device), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3], device=device), torch.tensor(
        [False, True] * 4, device=device)


def test_eval_features_on_the_gpu_match_the_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, arch="resnet18"), pretrained=None).eval()
    images, _, _ = _batch("cpu")
    with torch.no_grad():
        cpu = model(images)
        gpu = model.cuda()(images.cuda())
    torch.testing.assert_close(gpu.global_feat.cpu(), cpu.global_feat, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(gpu.local_feat.cpu(), cpu.local_feat, rtol=1e-3, atol=1e-3)


def test_an_amp_training_step_lowers_the_loss() -> None:
    from reid.engine.optim import resolve_amp
    from reid.engine.step import apply_gradients, forward_losses

    torch.manual_seed(0)
    device = torch.device("cuda")
    amp = resolve_amp(None, device)
    assert amp.name in ("bf16", "fp16")
    model = build_model(ModelConfig(num_classes=4, arch="resnet18"), pretrained=None).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp.needs_scaler)
    images, labels, occluded = _batch("cuda")
    totals = []
    for _ in range(5):
        losses = forward_losses(model, images, labels, occluded, LossConfig(), amp)
        assert torch.isfinite(losses.total)
        totals.append(losses.total.item())
        apply_gradients(losses.total, optimizer, scaler)
    assert totals[-1] < totals[0], totals
