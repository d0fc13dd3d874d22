"""Grad-CAM, the box-mass figure and `reid saliency` end to end on the tiny store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from cli.reid_saliency import saliency_command
from common.errors import BadInputError
from occsim.store import read_store
from reid.models.aligned import ModelConfig, build_model
from reid.saliency import (
    GradCAM,
    box_area_share,
    default_model_names,
    box_mass,
    find_target_layer,
    grad_cam,
    select_occluded_queries,
    upsample_cam,
)

# ----------------------------------------------------------------------------- grad_cam


def test_grad_cam_matches_hand_computation() -> None:
    # Image 0: channel weights = spatial mean of the gradients = (1, -0.5), so
    # cam = A0 - 0.5 A1 = [[1, 1.5], [-1.5, 1]] -> ReLU -> / 1.5.
    acts = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]]])
    grads = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[-2.0, 0.0], [0.0, 0.0]]]])
    # Image 1: every weighted sum is negative, so the map is all zeros and must stay so.
    acts = torch.cat([acts, torch.ones(1, 2, 2, 2)])
    grads = torch.cat([grads, -torch.ones(1, 2, 2, 2)])
    cam = grad_cam(acts, grads)
    assert cam.shape == (2, 2, 2)
    expected = torch.tensor([[2.0 / 3.0, 1.0], [0.0, 2.0 / 3.0]])
    torch.testing.assert_close(cam[0], expected)
    assert torch.equal(cam[1], torch.zeros(2, 2))


def test_grad_cam_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"both be \[N, C, h, w\], got \(1, 2, 3, 3\) and \(1, 2, 3, 2\)"):
        grad_cam(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 2))


class HalfReader(nn.Module):
    """A "re-ID" model whose head reads only one half of its last feature map.

    The last block is a fixed 1x1 conv: channel 0 = red - green, channel 1 = green - red.
    The head applies a ReLU, zeroes the half it ignores, and average-pools: its score is the
    pooled response. On an image that is red in the top half and green in the bottom half,
    a top-reading head is driven by channel 0 (which fires on the top), a bottom-reading head
    by channel 1 (which fires on the bottom) -- Grad-CAM must follow.
    """

    def __init__(self, half: str) -> None:
        super().__init__()
        self.half = half
        self.backbone = nn.Module()
        self.backbone.layer4 = nn.Conv2d(3, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.backbone.layer4.weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = torch.relu(self.backbone.layer4(x))
        h = fmap.shape[2] // 2
        mask = torch.zeros_like(fmap)
        if self.half == "top":
            mask[:, :, :h] = 1.0
        else:
            mask[:, :, h:] = 1.0
        return (fmap * mask).mean(dim=(2, 3))  # [N, 2]


def _red_top_green_bottom(n: int, height: int = 8, width: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.rand(n, 3, height, width, generator=gen)  # texture, far weaker than the colours
    x[:, 0, : height // 2] += 1.0
    x[:, 1, height // 2 :] += 1.0
    return x


@pytest.mark.parametrize("half", ["top", "bottom"])
def test_gradcam_puts_saliency_where_the_head_looks(half: str) -> None:
    model = HalfReader(half).eval()
    layer = find_target_layer(model)
    assert layer is model.backbone.layer4
    images = _red_top_green_bottom(3)
    with GradCAM(model, layer) as cam:
        maps = cam(images, lambda out: out.sum(dim=1))
        assert len(layer._forward_hooks) == 1
    assert len(layer._forward_hooks) == 0  # the hook is gone after the block
    assert all(p.grad is None for p in model.parameters())  # no parameter gradient was accumulated
    assert maps.shape == (3, 8, 4)
    top_share = maps[:, :4].sum(dim=(1, 2)) / maps.sum(dim=(1, 2))
    share = top_share if half == "top" else 1.0 - top_share
    assert bool((share > 0.9).all()), share


def test_gradcam_outside_context_is_an_error() -> None:
    model = HalfReader("top")
    with pytest.raises(RuntimeError, match="use GradCAM as a context manager"):
        GradCAM(model, model.backbone.layer4)(torch.zeros(1, 3, 8, 4), lambda out: out.sum(dim=1))


def test_find_target_layer_on_aligned_reid_is_layer4() -> None:
    model = build_model(ModelConfig(num_classes=3, arch="resnet18"), pretrained=None)
    assert find_target_layer(model) is model.backbone.layer4


def test_upsample_cam_keeps_type_shape_and_range() -> None:
    cam = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    up = upsample_cam(cam, (8, 6))
    assert isinstance(up, np.ndarray) and up.shape == (8, 6)
    assert up.min() >= 0.0 and up.max() <= 1.0
    const = upsample_cam(torch.full((2, 3, 2), 0.7), (12, 8))
    assert isinstance(const, torch.Tensor) and const.shape == (2, 12, 8)
    torch.testing.assert_close(const, torch.full((2, 12, 8), 0.7))


# ----------------------------------------------------------------------------- box mass


def test_box_mass_on_hand_made_maps() -> None:
    ones = np.ones((10, 8))
    assert box_mass(ones, (2, 3, 4, 5)) == pytest.approx(20 / 80)  # area share of a uniform map
    inside = np.zeros((10, 8))
    inside[3:8, 2:6] = 0.5
    assert box_mass(inside, (2, 3, 4, 5)) == pytest.approx(1.0)
    weighted = np.zeros((10, 8))
    weighted[0, 0] = 3.0  # outside
    weighted[4, 3] = 1.0  # inside
    assert box_mass(weighted, (2, 3, 4, 5)) == pytest.approx(0.25)
    # Clipped at the border: x 6..7, y 8..9 -> 4 pixels of 80.
    assert box_mass(ones, (6, 8, 4, 4)) == pytest.approx(4 / 80)
    assert box_area_share((6, 8, 4, 4), (10, 8)) == pytest.approx(4 / 80)
    assert box_area_share((2, 3, 4, 5), (10, 8)) == pytest.approx(0.25)
    assert math.isnan(box_mass(np.zeros((10, 8)), (2, 3, 4, 5)))  # an empty map: no evidence
    assert box_mass(torch.ones(10, 8), (2, 3, 4, 5)) == pytest.approx(0.25)


def test_box_mass_refuses_a_missing_box() -> None:
    with pytest.raises(ValueError, match=r"box \(-1, -1, -1, -1\) is not an occlusion box"):
        box_mass(np.ones((10, 8)), (-1, -1, -1, -1))
    with pytest.raises(ValueError, match=r"box \(20, 20, 4, 4\) lies outside the 10x8 image"):
        box_mass(np.ones((10, 8)), (20, 20, 4, 4))


# ----------------------------------------------------------------------------- selection


def test_select_occluded_queries(tiny_store: Path) -> None:
    manifest = read_store(tiny_store).splits["query"]
    rows = select_occluded_queries(manifest, tiny_store, "mean", ids=[103, 101])
    # 8 clean rows first (identity-major, cameras 1, 2), then their occluded copies in order.
    assert rows.tolist() == [12, 8]
    drawn = select_occluded_queries(manifest, tiny_store, "mean", n=3, seed=5)
    assert len(set(manifest.pid[drawn].tolist())) == 3
    assert bool(manifest.occluded[drawn].all())
    assert np.array_equal(drawn, select_occluded_queries(manifest, tiny_store, "mean", n=3, seed=5))
    with pytest.raises(BadInputError, match="tiny.h5"):
        select_occluded_queries(manifest, tiny_store, "mean", ids=[999])
    with pytest.raises(BadInputError, match="no images occluded"):
        select_occluded_queries(manifest, tiny_store, "black", n=2)


# ----------------------------------------------------------------------------- CLI


def test_cli_saliency_writes_figures_and_box_mass(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "sal"
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--checkpoint", str(checkpoint),
            "--name", "a", "--name", "b", "--ids", "102,104", "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(saliency_command, args)
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["saliency_pid0102_q10.png", "saliency_pid0104_q14.png", "saliency_sheet.png"]
    figure = cv2.imread(str(out / "saliency_pid0102_q10.png"))
    assert figure is not None and figure.shape[0] > 32 * 3  # the 3x tiles plus the label strip
    summary = json.loads((out / "box_mass.json").read_text())
    assert [m["name"] for m in summary["models"]] == ["a", "b"]
    # Every tiny box is 10x8 on a 32x16 image: chance = 80 / 512.
    assert summary["chance_box_area_share"] == pytest.approx(80 / 512)
    assert [img["pid"] for img in summary["per_image"]] == [102, 104]
    for img in summary["per_image"]:
        a, b = img["box_mass"]["a"], img["box_mass"]["b"]
        assert a == b  # the same checkpoint twice: deterministic
        assert a is None or 0.0 <= a <= 1.0
    assert "in-box share" in result.output and "chance" in result.output


@pytest.mark.parametrize("figures", [1, 0])
def test_cli_saliency_measures_every_query_but_draws_only_figures(tiny_store: Path, checkpoint: Path, tmp_path: Path,
                                                                    figures: int) -> None:
    out = tmp_path / "sal"
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--n", "3", "--figures", str(figures),
            "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(saliency_command, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "box_mass.json").read_text())
    assert len(summary["per_image"]) == 3  # the share is over all --n queries
    drawn = sorted(p.name for p in out.glob("saliency_pid*.png"))
    assert len(drawn) == figures
    assert (out / "saliency_sheet.png").exists() == (figures > 0)
    if figures:  # the first query by pid is the one drawn
        first = summary["per_image"][0]
        assert drawn == [f"saliency_pid{first['pid']:04d}_q{first['row']}.png"]


def test_cli_saliency_force_removes_the_earlier_runs_figures_only(tiny_store: Path, checkpoint: Path,
                                                                  tmp_path: Path) -> None:
    """A --force rerun that draws fewer identities leaves none of the earlier run's figures
    behind (the folder shows one run); files that are not saliency outputs stay."""
    out = tmp_path / "sal"
    base = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--n", "3", "--device", "cpu",
            "--out", str(out)]
    assert CliRunner().invoke(saliency_command, [*base, "--figures", "3"]).exit_code == 0
    assert len(list(out.glob("saliency_pid*.png"))) == 3
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(saliency_command, [*base, "--figures", "1", "--force"])
    assert result.exit_code == 0, result.output
    first = json.loads((out / "box_mass.json").read_text())["per_image"][0]
    assert sorted(p.name for p in out.glob("saliency_pid*.png")) == [f"saliency_pid{first['pid']:04d}_q{first['row']}.png"]
    assert (out / "saliency_sheet.png").exists()
    assert CliRunner().invoke(saliency_command, [*base, "--figures", "0", "--force"]).exit_code == 0
    assert not list(out.glob("saliency_*.png")) and (out / "notes.txt").read_text() == "mine"


def test_saliency_normalises_with_the_checkpoints_mean_and_std(tiny_store: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from reid.saliency import gradcam
    from reid.saliency.run import run_saliency
    from tests.conftest import write_fresh_checkpoint

    path = write_fresh_checkpoint(tmp_path / "gray" / "last.pt", tiny_store,
                                  mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    seen: list[tuple] = []
    real = gradcam.normalize_batch

    def spy(images, mean=None, std=None):
        seen.append((tuple(mean), tuple(std)))
        return real(images, mean, std)

    monkeypatch.setattr(gradcam, "normalize_batch", spy)
    run_saliency(tiny_store, [path], tmp_path / "sal", ids=[102], device="cpu")
    assert seen and set(seen) == {((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))}


def test_cli_saliency_unknown_id_exits_2(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--ids", "999", "--device", "cpu",
            "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(saliency_command, args)
    assert result.exit_code == 2
    assert "error:" in result.output and "tiny.h5" in result.output and "999" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_saliency_name_count_must_match(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    args = ["--data", str(tiny_store), "--checkpoint", str(checkpoint), "--name", "a", "--name", "b",
            "--device", "cpu", "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(saliency_command, args)
    assert result.exit_code == 2 and "--name" in result.output


def test_default_model_names() -> None:
    paths = [Path("runs/baseline/best.pt"), Path("runs/obc/best.pt"), Path("other/baseline/last.pt")]
    assert default_model_names(paths) == ["baseline", "obc", "baseline-2"]
    assert default_model_names(paths[:2], ["a", "b"]) == ["a", "b"]
    with pytest.raises(BadInputError, match="--name"):
        default_model_names(paths, ["a"])
