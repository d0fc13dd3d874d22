"""The training-recipe options: occlusion as a per-image augmentation, twin-free mining,
clean-only anchors and BNNeck retrieval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from occsim.store import read_store
from reid.data.datasets import OcclusionAugmentSet
from reid.data.loaders import build_train_loader
from reid.data.sampler import SampleKey
from reid.data.transforms import TrainTransform, TransformConfig
from reid.engine.features import extract_features
from reid.engine.trainer import TrainConfig
from reid.losses import LossConfig, compute_losses
from reid.losses.triplet import global_trihard, hard_example_mining, margin_ranking
from reid.models.aligned import ModelConfig, build_model
from tests.conftest import write_tiny_store

SMALL = TransformConfig(size=(64, 32), pad=2)


def _draws(dataset: OcclusionAugmentSet, epoch: int) -> np.ndarray:
    """Occluded flag of every item of one epoch (slot = index), shape [len(dataset)]."""
    return np.array([dataset[SampleKey(i, epoch, i)]["occluded"] for i in range(len(dataset))])


def test_augment_reads_clean_rows_or_their_own_copies(tiny_store: Path) -> None:
    manifest = read_store(tiny_store).splits["train"]
    never = OcclusionAugmentSet(tiny_store, p=0.0)
    always = OcclusionAugmentSet(tiny_store, p=1.0)
    assert len(never) == len(always) == int((~manifest.occluded).sum())
    for i in range(len(always)):
        clean, occluded = never[SampleKey(i, 0, i)], always[SampleKey(i, 0, i)]
        assert not clean["occluded"] and occluded["occluded"]
        # The copy read is a copy of this very clean row, and says so for the OBC target.
        assert occluded["clean_index"] == clean["row"] == clean["clean_index"]
        assert manifest.occluded[occluded["row"]] and occluded["occ_type"] == manifest.occ_type[occluded["row"]]
        assert occluded["label"] == clean["label"]


def test_augment_probability_ramp_and_reproducibility(tmp_path: Path) -> None:
    path = write_tiny_store(tmp_path / "two.h5", occ_types=("mean", "black"))
    constant = OcclusionAugmentSet(path, p=0.5, seed=3)
    ramp = OcclusionAugmentSet(path, p=0.5, ramp_epochs=4, seed=3)
    assert [ramp.occlusion_probability(e) for e in range(6)] == [0.0, 0.125, 0.25, 0.375, 0.5, 0.5]
    assert not _draws(ramp, 0).any()
    # Past the ramp, the two read exactly the same rows (same seed, same draws).
    assert np.array_equal(_draws(ramp, 5), _draws(constant, 5))
    draws = np.stack([_draws(constant, e) for e in range(40)])
    assert 0.4 < draws.mean() < 0.6
    picked = {constant[SampleKey(0, e, 0)]["occ_type"] for e in range(40) if draws[e, 0]}
    assert picked == {1, 2}  # both occluder types are drawn
    first = constant[SampleKey(2, 7, 9)]
    again = constant[SampleKey(2, 7, 9)]
    assert first["row"] == again["row"]


def test_augment_loader_batches_and_bad_input(tiny_store: Path, tmp_path: Path) -> None:
    loader = build_train_loader(tiny_store, "augment", 3, 4, SMALL, workers=0, occlusion_p=1.0)
    batch = next(iter(loader))
    assert len(batch) == 12 and batch.occluded.all()
    with pytest.raises(BadInputError, match="--occlusion-p 1.5"):
        OcclusionAugmentSet(tiny_store, p=1.5)
    clean_only = write_tiny_store(tmp_path / "clean.h5", occ_types=())
    with pytest.raises(BadInputError, match="clean.h5: the train split has no occluded copies"):
        OcclusionAugmentSet(clean_only, transform=TrainTransform(SMALL))
    with pytest.raises(BadInputError, match="--occlusion-ramp-epochs -1"):
        TrainConfig(train_on="augment", occlusion_ramp_epochs=-1)


def test_twin_is_never_the_mined_positive() -> None:
    # Anchor 0 (clean) and 2 (its occluded twin) are far apart; 1 is the other image of the id.
    dist = torch.tensor([
        [0.0, 1.0, 5.0, 3.0],
        [1.0, 0.0, 2.0, 3.0],
        [5.0, 2.0, 0.0, 4.0],
        [3.0, 3.0, 4.0, 0.0],
    ])
    labels = torch.tensor([7, 7, 7, 8])
    twins = torch.tensor([0, 1, 0, 3])
    exclude = twins.unsqueeze(1) == twins.unsqueeze(0)
    ap, _, p_inds, _ = hard_example_mining(dist, labels)
    assert p_inds.tolist()[:3] == [2, 2, 0]
    ap_x, an_x, p_x, n_x = hard_example_mining(dist, labels, exclude)
    assert p_x.tolist() == [1, 2, 1, 3] and ap_x.tolist() == [1.0, 2.0, 2.0, 0.0]
    assert n_x.tolist() == [3, 3, 3, 0] and an_x.tolist() == [3.0, 3.0, 4.0, 3.0]


def test_clean_anchors_only_averages_over_clean_anchors() -> None:
    ap = torch.tensor([1.0, 2.0, 0.5, 3.0])
    an = torch.tensor([1.0, 1.0, 2.0, 1.0])
    anchors = torch.tensor([True, False, True, False])
    loss, violation = margin_ranking(ap, an, 0.3, anchors)
    # Hinges: 0.3, 1.3, 0 (clean anchor 2 satisfied), 2.3 -> clean anchors: (0.3 + 0) / 2.
    assert loss.item() == pytest.approx(0.15)
    assert violation.item() == pytest.approx(0.5)
    none = torch.zeros(4, dtype=torch.bool)
    assert margin_ranking(ap, an, 0.3, none)[0].item() == 0.0


def test_loss_options_change_the_loss_as_configured() -> None:
    torch.manual_seed(0)
    feats = torch.randn(8, 16, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    occluded = torch.tensor([False] * 4 + [True] * 4)
    clean_index = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    plain = global_trihard(feats, labels)[0]
    clean_only = global_trihard(feats, labels, anchors=~occluded)[0]
    hinge = global_trihard(feats, labels)  # per-anchor hinge recomputed by hand below
    dist_ap, dist_an = hinge[1], hinge[2]
    by_hand = torch.relu(dist_ap - dist_an + 0.3)[:4].mean()
    assert clean_only.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert plain.item() != pytest.approx(clean_only.item())

    model = build_model(ModelConfig(num_classes=2, arch="resnet18"), pretrained=None).eval()
    with torch.no_grad():
        output = model(torch.randn(8, 3, 64, 32))
    with pytest.raises(ValueError, match="clean_index"):
        compute_losses(output, labels, occluded, LossConfig(exclude_twin_positive=True))
    twin_free = compute_losses(output, labels, occluded, LossConfig(exclude_twin_positive=True), clean_index)
    default = compute_losses(output, labels, occluded, LossConfig())
    assert twin_free.dist_ap.item() <= default.dist_ap.item()


def test_bn_retrieval_feature_is_the_neck_output(tiny_store: Path) -> None:
    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, arch="resnet18", retrieval_feature="bn")
    model = build_model(config, pretrained=None).eval()
    with torch.no_grad():  # a neck that is not the identity, as after training
        model.neck.running_mean.fill_(0.1)
        model.neck.running_var.fill_(4.0)
    rows = np.arange(4)
    feats = extract_features(model, tiny_store, "gallery", rows, input_size=(64, 32), device="cpu")
    from reid.data.loaders import build_eval_loader

    batch = next(iter(build_eval_loader(tiny_store, "gallery", rows, size=(64, 32)))).to("cpu")
    with torch.no_grad():
        out = model(batch.images)
    assert np.allclose(feats.global_feat, out.bn_feat.numpy(), atol=1e-5)
    assert not np.allclose(feats.global_feat, out.global_feat.numpy(), atol=1e-3)
    with pytest.raises(BadInputError, match="--retrieval-feature 'neck'"):
        ModelConfig(num_classes=4, retrieval_feature="neck")
    assert ModelConfig.from_dict({"num_classes": 3}).retrieval_feature == "global"  # old checkpoints


def test_learning_curve_counts_two_core_minutes_of_cpu_time(tmp_path: Path) -> None:
    from reid.engine.curves import budget_minutes, learning_curve, plot_learning_curves

    records = [
        {"epoch": 1, "seconds": 70.0, "cpu_seconds": 120.0},
        {"epoch": 2, "seconds": 70.0, "cpu_seconds": 240.0, "val": {"queries": {"clean": {"mAP": 0.1, "R1": 0.2}}}},
        {"epoch": 3, "seconds": 60.0},  # written before cpu_seconds existed: wall-clock x 2 cores
        {"epoch": 4, "cpu_seconds": 60.0, "val": {"queries": {"clean": {"mAP": 0.25}}}},
    ]
    assert budget_minutes(records) == [1.0, 3.0, 4.0, 4.5]
    assert learning_curve(records) == ([3.0, 4.5], [10.0, 25.0])
    assert learning_curve(records, measure="R1") == ([3.0], [20.0])
    png = plot_learning_curves({"run": records}, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reid_curves_draws_runs_and_refuses_runs_without_validation(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from cli.reid_curves import curves_command

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": 1, "cpu_seconds": 120.0, "val": {"queries": {"clean": {"mAP": 0.1}}}}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    out = tmp_path / "curve.png"
    result = CliRunner().invoke(curves_command, [str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    # The y axis is a --measure (--metric is the distance of `reid eval` and `reid search`).
    result = CliRunner().invoke(curves_command, [str(run), "--out", str(out), "--measure", "R1", "--force"])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(curves_command, [str(run), "--metric", "R1"]).exit_code == 2
    unvalidated = tmp_path / "plain"
    unvalidated.mkdir()
    (unvalidated / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "cpu_seconds": 1.0}) + "\n")
    result = CliRunner().invoke(curves_command, [str(unvalidated), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert "no validated epoch; train with --eval-every N" in result.output
    assert not (tmp_path / "x.png").exists()
    result = CliRunner().invoke(curves_command, [str(run), "--label", "a", "--label", "b"])
    assert result.exit_code == 2 and "--label: give one per run (1), got 2" in result.output
