"""Per-stripe visibility: boxes through the augmentation, coverage targets, the loss, the head,
the visibility-weighted aligned distance, and `reid train --visibility-weight` -> `reid eval --visibility`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from occsim.schema import OccType
from occsim.store import read_store
from reid.data.collate import CollatePairs
from reid.data.datasets import NO_BOX_F, PairedTrainSet, transform_item
from reid.data.transforms import EvalTransform, TrainTransform, TransformConfig, item_rng
from reid.distance import aligned_local_distance
from reid.retrieval_distance import combined_distance, visibility_weighted_aligned_distance
from reid.losses import LossConfig, compute_losses
from reid.losses.visibility import stripe_coverage, visibility_loss, visibility_targets
from reid.models.aligned import ModelConfig, ModelOutput, build_model
from reid.models.checkpoint import load_model, save_checkpoint

SIZE = (64, 32)


# ------------------------------------------------------------------- coverage targets


def test_stripe_coverage_by_hand() -> None:
    # input 8 x 4 (H x W), 4 stripes of 2 rows (area 8 each)
    boxes = torch.tensor([
        [0.0, 1.0, 2.0, 4.0],     # rows [1, 5), cols [0, 2): half the width
        [2.0, 6.0, 10.0, 10.0],   # clipped to rows [6, 8), cols [2, 4)
        [-1.0, -1.0, -1.0, -1.0],  # no box
        [0.0, 0.5, 4.0, 1.0],     # full width, rows [0.5, 1.5)
    ])
    expected = torch.tensor([
        [0.25, 0.5, 0.25, 0.0],
        [0.0, 0.0, 0.0, 0.5],
        [0.0, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.0],
    ])
    torch.testing.assert_close(stripe_coverage(boxes, (8, 4), 4), expected)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        stripe_coverage(torch.zeros(3), (8, 4), 4)


def test_box_follows_flip_and_resize() -> None:
    # stored 32x16 image, box x=2, y=4, w=8, h=10 -> 64x32 input (x2), mirrored: x = 32 - 4 - 16 = 12
    image = np.zeros((32, 16, 3), dtype=np.uint8)
    image[4:14, 2:10] = 255
    flip = TrainTransform(TransformConfig(size=SIZE, flip_p=1.0, pad=0))
    (tensor,), box = transform_item(flip, [image], item_rng(0, 0, 0), (2, 4, 8, 10), (32, 16))
    assert box == (12.0, 8.0, 16.0, 20.0)
    white = tensor[0].numpy() > 127
    rows, cols = np.nonzero(white)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (8, 28, 12, 28)
    # 4 stripes of 16 rows: rows [8, 28) x half the width
    torch.testing.assert_close(stripe_coverage(torch.tensor([box]), SIZE, 4), torch.tensor([[0.25, 0.375, 0.0, 0.0]]))
    # resize only (evaluation), and "no box" stays -1s whatever the transform
    assert transform_item(EvalTransform(SIZE), [image], None, (2, 4, 8, 10), (32, 16))[1] == (4.0, 8.0, 16.0, 20.0)
    assert transform_item(flip, [image], item_rng(0, 0, 0), (-1, -1, -1, -1), (32, 16))[1] == NO_BOX_F


def test_box_follows_the_crop_and_is_clipped() -> None:
    config = TransformConfig(size=SIZE, flip_p=0.0, pad=10)
    transform = TrainTransform(config)
    image = np.zeros((32, 16, 3), dtype=np.uint8)
    for seed in range(6):
        params = transform.draw(item_rng(seed, 0, 0))
        _, box = transform_item(transform, [image], item_rng(seed, 0, 0), (0, 0, 8, 10), (32, 16))
        # scaled box (0, 0, 16, 20), shifted by (10 - crop), then clipped to the 64x32 frame
        x0, y0 = 10 - params.crop_x, 10 - params.crop_y
        x1, y1 = min(32, x0 + 16), min(64, y0 + 20)
        x0, y0 = max(0, x0), max(0, y0)
        assert box == (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def test_paired_items_and_batches_carry_the_box_where_the_pixels_differ(tiny_store: Path) -> None:
    transform = TrainTransform(TransformConfig(size=SIZE, pad=4))
    dataset = PairedTrainSet(tiny_store, transform=transform, seed=3)
    items = [dataset[i] for i in range(6)]
    for item in items:
        clean, occluded = item["images"]
        x, y, w, h = item["box"]
        assert w > 0 and h > 0
        inside = np.zeros(SIZE, dtype=bool)  # 1 px margin: bilinear upsampling bleeds
        inside[max(0, math.floor(y) - 1) : math.ceil(y + h) + 1, max(0, math.floor(x) - 1) : math.ceil(x + w) + 1] = True
        differs = (clean != occluded).any(dim=0).numpy()
        assert differs.any() and not differs[~inside].any()
    batch = CollatePairs()(items)
    assert batch.boxes.shape == (12, 4) and batch.boxes.dtype == torch.float32
    assert (batch.boxes[:6] == -1).all()  # the clean halves have no box
    torch.testing.assert_close(batch.boxes[6:], torch.tensor([item["box"] for item in items]))


def test_targets_clean_occluded_unknown_and_real() -> None:
    boxes = torch.tensor([[-1.0, -1, -1, -1], [0, 0, 4, 4], [-1, -1, -1, -1], [0, 0, 4, 4]])
    occluded = torch.tensor([False, True, True, True])
    occ_type = torch.tensor([0, 1, 1, int(OccType.REAL)])
    target = visibility_targets(boxes, occluded, occ_type, (8, 4), 2)
    torch.testing.assert_close(target[:2], torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert torch.isnan(target[2:]).all()  # no box, and a real occlusion: no target
    # without boxes at all, only the clean rows are known
    assert torch.isnan(visibility_targets(None, occluded, None, (8, 4), 2)[1:]).all()


# ----------------------------------------------------------------------------- loss


def test_visibility_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0]], requires_grad=True)
    target = torch.tensor([[0.5, 1.0], [float("nan"), float("nan")]])
    loss, error = visibility_loss(logits, target)
    # BCE(0, 0.5) = ln 2; BCE(ln 3, 1) = -ln(3/4); the NaN row is masked out
    assert loss.item() == pytest.approx((math.log(2.0) + math.log(4.0 / 3.0)) / 2)
    assert error.item() == pytest.approx((0.0 + 0.25) / 2)
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0
    empty, _ = visibility_loss(logits, torch.full((2, 2), float("nan")))
    assert empty.item() == 0.0 and empty.requires_grad  # still in the graph (DDP)


def _tiny_batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, *SIZE, generator=gen)
    labels = torch.arange(n) // 2
    occluded = torch.arange(n) % 2 == 1
    boxes = torch.tensor([[-1.0] * 4 if i % 2 == 0 else [0.0, 32.0, 32.0, 32.0] for i in range(n)])
    return images, labels, occluded, boxes


def test_zero_weight_gives_the_head_no_gradient_and_a_weight_needs_the_head() -> None:
    from reid.engine.step import forward_losses

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, arch="resnet18", visibility_head=True), pretrained=None).train()
    images, labels, occluded, boxes = _tiny_batch()
    losses = forward_losses(model, images, labels, occluded, LossConfig(), boxes=boxes)
    losses.total.backward()
    assert model.visibility_head.weight.grad is None and losses.visibility.item() > 0  # logged, not trained
    model.zero_grad(set_to_none=True)
    losses = forward_losses(model, images, labels, occluded, LossConfig(visibility_weight=1.0), boxes=boxes)
    losses.total.backward()
    assert model.visibility_head.weight.grad.abs().sum() > 0
    plain = build_model(ModelConfig(num_classes=4, arch="resnet18"), pretrained=None).train()
    with pytest.raises(ValueError, match="needs a model with a visibility head"):
        forward_losses(plain, images, labels, occluded, LossConfig(visibility_weight=1.0), boxes=boxes)


def test_a_few_steps_with_the_head_lower_the_loss_on_a_fixed_batch() -> None:
    from reid.engine.step import forward_losses

    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=4, arch="resnet18", visibility_head=True), pretrained=None).train()
    images, labels, occluded, boxes = _tiny_batch()
    config = LossConfig(visibility_weight=1.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(6):
        losses = forward_losses(model, images, labels, occluded, config, boxes=boxes)
        history.append((losses.total.item(), losses.visibility.item()))
        optimizer.zero_grad()
        losses.total.backward()
        optimizer.step()
    assert history[-1][0] < history[0][0] and history[-1][1] < history[0][1]


# ----------------------------------------------------------------------------- model


def test_head_shapes_and_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3, arch="resnet18", num_stripes=4, visibility_head=True)
    model = build_model(config, pretrained=None).eval()
    images = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        out = model(images)
        plain = build_model(ModelConfig(num_classes=3, arch="resnet18"), pretrained=None).eval()(images)
    assert out.visibility_logits.shape == (2, 4) and out.has_visibility
    assert plain.visibility_logits.shape == (2, 0) and not plain.has_visibility
    path = save_checkpoint(tmp_path / "vis.pt", model, config, "fp")
    reloaded, checkpoint = load_model(path)
    assert checkpoint.config.visibility_head
    with torch.no_grad():
        again = reloaded.eval()(images)
    assert torch.equal(again.visibility_logits, out.visibility_logits) and torch.equal(again.global_feat, out.global_feat)


def test_model_output_probabilities_by_hand() -> None:
    """occluded_probability = softmax(occ_logits)[:, 1]; visible_probability = sigmoid of each
    stripe's logit, and None for a model without the visibility head."""
    feat = torch.zeros(2, 4)
    occ_logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    out = ModelOutput(feat, torch.zeros(2, 2, 4), torch.zeros(2, 3), occ_logits, feat,
                      torch.tensor([[0.0, math.log(3.0)], [-math.log(3.0), 100.0]]))
    assert out.occluded_probability().tolist() == pytest.approx([0.75, 0.2])
    assert out.visible_probability().tolist() == [pytest.approx([0.5, 0.75]), pytest.approx([0.25, 1.0])]
    assert out._replace(visibility_logits=torch.zeros(2, 0)).visible_probability() is None
    assert out._replace(visibility_logits=None).visible_probability() is None


# --------------------------------------------------------------------------- distance


def _tanh_half(a: float, b: float) -> float:
    return math.tanh(abs(a - b) / 2)


def _weighted_by_hand(q: list[float], g: list[float], vq: list[float], vg: list[float]) -> float:
    """H = 2, C = 1: the formula of visibility_weighted_aligned_distance, both paths enumerated."""
    d = [[_tanh_half(q[a], g[b]) for b in range(2)] for a in range(2)]
    w = [[max(vq[a], 1e-3) * max(vg[b], 1e-3) for b in range(2)] for a in range(2)]
    mean = sum(w[a][b] * d[a][b] for a in range(2) for b in range(2)) / sum(w[a][b] for a in range(2) for b in range(2))
    c = [[w[a][b] * d[a][b] + (1 - w[a][b]) * mean for b in range(2)] for a in range(2)]
    return c[0][0] + min(c[0][1], c[1][0]) + c[1][1]


def test_weighted_distance_by_hand_an_occluded_bottom_stripe_no_longer_decides() -> None:
    # 1-D stripe features. The query's top is the person (0), its bottom the occluder (1).
    # The true match shows the same top and its legs (4); an impostor has a slightly
    # different top (0.8) and a bottom that looks like the occluder (1).
    query, match, impostor = [0.0, 1.0], [0.0, 4.0], [0.8, 1.0]
    x = torch.tensor([query]).unsqueeze(-1)  # [1, 2, 1]
    y = torch.tensor([match, impostor]).unsqueeze(-1)  # [2, 2, 1]
    plain = aligned_local_distance(x, y)[0]
    # plain: match 0 + tanh(0.5) + tanh(1.5) = 1.3670, impostor tanh(0.4) + tanh(0.1) + 0 = 0.4797
    assert plain.tolist() == pytest.approx([math.tanh(0.5) + math.tanh(1.5), math.tanh(0.4) + math.tanh(0.1)], abs=1e-5)
    assert plain[1] < plain[0]  # the occluder makes the impostor look closer
    vq, vg = [1.0, 0.0], [1.0, 1.0]
    weighted = visibility_weighted_aligned_distance(x, y, torch.tensor([vq]), torch.tensor([vg, vg]))[0]
    expected = [_weighted_by_hand(query, match, vq, vg), _weighted_by_hand(query, impostor, vq, vg)]
    assert weighted.tolist() == pytest.approx(expected, abs=1e-5)  # float32 arithmetic
    assert expected == pytest.approx([0.96481, 1.22053], abs=1e-4)
    assert weighted[0] < weighted[1]  # compared on what both show, the true match wins


def test_weighted_distance_properties() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, 4, generator=gen), torch.randn(7, 3, 4, generator=gen)
    vx, vy = torch.rand(5, 3, generator=gen), torch.rand(7, 3, generator=gen)
    # all visible: exactly the plain aligned distance
    torch.testing.assert_close(
        visibility_weighted_aligned_distance(x, y, torch.ones(5, 3), torch.ones(7, 3), block_size=2),
        aligned_local_distance(x, y),
    )
    # symmetric, bounded by the 2H - 1 cells of a path, block size irrelevant
    d = visibility_weighted_aligned_distance(x, y, vx, vy)
    torch.testing.assert_close(d, visibility_weighted_aligned_distance(y, x, vy, vx).t())
    torch.testing.assert_close(d, visibility_weighted_aligned_distance(x, y, vx, vy, block_size=3))
    assert (d >= 0).all() and (d < 5).all()
    # the evaluator's entry point adds the global part
    both = combined_distance(x.flatten(1), y.flatten(1), x, y, mode="global+local", device="cpu",
                             q_visibility=vx, g_visibility=vy)
    glob = combined_distance(x.flatten(1), y.flatten(1), mode="global", device="cpu")
    np.testing.assert_allclose(both, glob + d.numpy(), rtol=1e-5)
    from common.errors import BadInputError

    with pytest.raises(BadInputError, match="one probability per stripe"):
        visibility_weighted_aligned_distance(x, y, vx[:, :2], vy)


# ------------------------------------------------------------------------ end to end


def test_train_with_visibility_weight_then_eval_with_and_without_weighting(tiny_store: Path, tmp_path: Path) -> None:
    from cli.reid_eval import eval_command
    from cli.reid_train import train_command

    out = tmp_path / "run"
    result = CliRunner().invoke(train_command, [
        "--data", str(tiny_store), "--out", str(out), "--arch", "resnet18", "--pretrained", "none", "--epochs", "1",
        "--batch-p", "2", "--batch-k", "2", "--size", "64x32", "--workers", "0", "--warmup-epochs", "0",
        "--max-steps-per-epoch", "2", "--device", "cpu", "--eval-every", "0", "--visibility-weight", "0.5",
        "--train-on", "both", "--alpha", "0.8",
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["visibility"] > 0
    model, checkpoint = load_model(out / "last.pt")
    assert checkpoint.config.visibility_head

    def run_eval(*args: str):
        return CliRunner().invoke(eval_command, ["--data", str(tiny_store), "--checkpoint", str(out / "last.pt"),
                                                 "--device", "cpu", "--out", str(tmp_path / "eval.json"), "--force",
                                                 *args])

    result = run_eval("--distance", "global+local", "--visibility", "both", "--query", "clean,occluded")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["visibility"] == "both" and "with and without visibility weighting" in result.stdout
    names = [row["name"] for row in report["rows"]]
    assert names == ["clean", "clean+vis", "occluded:mean", "occluded:mean+vis"]
    assert [row["visibility"] for row in report["rows"]] == [False, True, False, True]
    occluded_rows = report["rows"][2]
    assert len(occluded_rows["occ_prob"]) == len(occluded_rows["query_rows"]) == 8
    assert occluded_rows["occ_prob_mean"] == pytest.approx(np.mean(occluded_rows["occ_prob"]), abs=1e-6)
    assert report["obc_head_trained"] is True  # alpha 0.8
    # auto: on for a local distance with a head, off for the global distance
    assert run_eval("--distance", "local", "--query", "clean").exit_code == 0
    assert json.loads((tmp_path / "eval.json").read_text())["visibility"] == "on"
    assert run_eval("--query", "clean").exit_code == 0
    assert json.loads((tmp_path / "eval.json").read_text())["visibility"] == "off"
    refused = run_eval("--visibility", "on", "--query", "clean")
    assert refused.exit_code == 2 and "use --distance local or global+local" in refused.stderr


def test_visibility_on_without_a_head_is_refused(tiny_store: Path, checkpoint: Path, tmp_path: Path) -> None:
    from cli.reid_eval import eval_command

    result = CliRunner().invoke(eval_command, [
        "--data", str(tiny_store), "--checkpoint", str(checkpoint), "--device", "cpu", "--distance", "local",
        "--visibility", "on", "--out", str(tmp_path / "e.json"),
    ])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ") and "no visibility head" in result.stderr
    assert not (tmp_path / "e.json").exists()
