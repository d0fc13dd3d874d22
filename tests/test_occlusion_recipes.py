"""The recipe grid's occlusion-aware rows: Random Erasing with mixed fills and with its boxes
labelled as occlusions, and the twin-consistency loss (reid.losses.twin)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from reid.data import HDF5Split, TrainTransform, TransformConfig, item_rng
from reid.data.datasets import NO_BOX_F
from reid.engine.config import TrainConfig
from reid.losses import LossConfig, compute_losses
from reid.losses.twin import twin_loss, twin_pairs
from reid.models import ModelOutput

MEAN_FILL = np.array([124, 116, 104])  # round(255 * ImageNet mean)


def _erasing(**changes: object) -> TrainTransform:
    return TrainTransform(TransformConfig(size=(64, 32), pad=0, flip=False, random_erasing=True, erasing_p=1.0,
                                          **changes))  # type: ignore[arg-type]


def _fill_kind(out: np.ndarray, box: tuple[int, int, int, int]) -> str:
    x, y, w, h = box
    patch = out[:, y : y + h, x : x + w].reshape(3, -1)
    if (patch == MEAN_FILL[:, None]).all():
        return "mean"
    if (patch == 0).all():
        return "black"
    return "random"


def test_black_fill_and_mixed_fills_draw_all_three() -> None:
    image = np.full((32, 16, 3), 7, dtype=np.uint8)
    black = _erasing(erasing_fill="black")
    params = black.draw(item_rng(0, 0, 0))
    assert _fill_kind(black.apply(image, params).numpy(), params.erase) == "black"
    mixed = _erasing(erasing_fill="mixed")
    kinds = Counter()
    for seed in range(60):
        params = mixed.draw(item_rng(seed, 0, 0))
        out = mixed.apply(image, params).numpy()
        kinds[_fill_kind(out, params.erase)] += 1
        x, y, w, h = params.erase
        mask = np.zeros((64, 32), dtype=bool)
        mask[y : y + h, x : x + w] = True
        assert (out[:, ~mask] == 7).all()  # only the box changes
    assert set(kinds) == {"mean", "black", "random"} and min(kinds.values()) >= 10


def test_mixed_fill_leaves_the_mean_fill_draws_unchanged() -> None:
    # The fill kind is drawn only for "mixed": a "mean" run's boxes are those it always had.
    mean, mixed = _erasing(), _erasing(erasing_fill="mixed")
    for seed in range(5):
        assert mean.draw(item_rng(seed, 0, 0)).erase == mixed.draw(item_rng(seed, 0, 0)).erase


def test_erasing_labels_mark_erased_clean_rows_occluded_with_the_box(tiny_store) -> None:
    labelled = TransformConfig(size=(64, 32), pad=0, flip=False, random_erasing=True, erasing_p=0.5,
                               erasing_labels=True)
    plain = TransformConfig(size=(64, 32), pad=0, flip=False, random_erasing=True, erasing_p=0.5)
    rows = np.arange(24)  # the tiny file's clean train rows
    with_labels = HDF5Split(tiny_store, "train", rows=rows, transform=TrainTransform(labelled), seed=1)
    without = HDF5Split(tiny_store, "train", rows=rows, transform=TrainTransform(plain), seed=1)
    erased = 0
    for index in range(len(rows)):
        item, reference = with_labels[index], without[index]
        assert torch.equal(item["image"], reference["image"])  # the same pixels, only the labels differ
        assert reference["occluded"] is False and reference["box"] == NO_BOX_F
        params = TrainTransform(labelled).draw(item_rng(1, 0, index))
        if params.erase is None:
            assert item["occluded"] is False and item["box"] == NO_BOX_F
        else:
            erased += 1
            assert item["occluded"] is True and item["box"] == tuple(float(v) for v in params.erase)
    assert 0 < erased < len(rows)


def test_erasing_options_are_checked() -> None:
    with pytest.raises(BadInputError, match="add --random-erasing"):
        TrainConfig(random_erasing=False, erasing_fill="mixed")
    with pytest.raises(BadInputError, match="--erasing-labels: .*--train-on clean or augment"):
        TrainConfig(erasing_labels=True, train_on="both")
    with pytest.raises(BadInputError, match="--twin-weight 1: .*add --train-on both"):
        TrainConfig(twin_weight=1.0)
    TrainConfig(erasing_labels=True, visibility_weight=1.0)  # erased boxes are visibility targets


def test_twin_pairs_find_each_occluded_images_clean_original() -> None:
    occluded = torch.tensor([False, False, True, True, True])
    clean_index = torch.tensor([10, 11, 11, 10, 12])  # row 4's original is not in the batch
    rows, twins = twin_pairs(occluded, clean_index)
    assert rows.tolist() == [2, 3] and twins.tolist() == [1, 0]


def test_twin_loss_by_hand_and_only_the_occluded_side_gets_gradient() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]], requires_grad=True)
    occluded = torch.tensor([False, False, True, True])
    clean_index = torch.tensor([0, 1, 1, 0])
    loss = twin_loss(features, occluded, clean_index)
    # row 2 -> twin row 1: cos((1,1), (0,2)) = 1/sqrt(2); row 3 -> twin row 0: cos = 1.
    assert loss.item() == pytest.approx(((1 - 1 / math.sqrt(2)) + 0.0) / 2, abs=1e-6)
    loss.backward()
    assert features.grad[:2].abs().sum() == 0  # clean twins are detached teachers
    assert features.grad[2].abs().sum() > 0


def test_twin_weight_adds_its_term_outside_alpha() -> None:
    torch.manual_seed(0)
    n = 8
    out = ModelOutput(global_feat=torch.randn(n, 6), local_feat=torch.randn(n, 3, 4), id_logits=torch.randn(n, 4),
                      occ_logits=torch.randn(n, 2), bn_feat=torch.randn(n, 6))
    pids = torch.tensor([0, 0, 1, 1] * 2)
    occluded = torch.tensor([False] * 4 + [True] * 4)
    clean_index = torch.arange(4).repeat(2)
    base = compute_losses(out, pids, occluded, LossConfig(alpha=0.8), clean_index=clean_index)
    with_twin = compute_losses(out, pids, occluded, LossConfig(alpha=0.8, twin_weight=0.5), clean_index=clean_index)
    expected = twin_loss(out.bn_feat, occluded, clean_index).item()
    assert with_twin.twin.item() == pytest.approx(expected, abs=1e-6) and expected > 0
    assert with_twin.total.item() == pytest.approx(base.total.item() + 0.5 * expected, abs=1e-5)
    with pytest.raises(ValueError, match="clean_index"):
        compute_losses(out, pids, occluded, LossConfig(twin_weight=0.5))


def test_grid_rows_never_train_on_a_held_out_occluder() -> None:
    from reid.study_config import Cell, recipe_cell, without_held_out

    pairs = recipe_cell("paper-obc")
    assert pairs.train_occluders == ()
    with_pedestrian = without_held_out(pairs, ("mean", "black", "random", "pedestrian"))
    assert with_pedestrian.train_occluders == ("mean", "black", "random")
    # Files without a held-out type, clean rows and rows that name their types are left alone.
    assert without_held_out(pairs, ("mean", "black")) is pairs
    assert without_held_out(recipe_cell("erasing"), ("mean", "pedestrian")).train_occluders == ()
    named = Cell("x", "x", 0.8, "both", train_occluders=("pedestrian",))
    assert without_held_out(named, ("mean", "pedestrian")) is named
    config = with_pedestrian.train_config(TrainConfig(arch="resnet18"))
    assert config.train_occluders == ("mean", "black", "random") and config.train_on == "both"


def test_the_epoch_line_shows_the_twin_loss_only_where_it_trains(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from reid.engine.step import log_epoch

    record = {"epoch": 1, "total": 2.0, "triplet_global": 0.5, "triplet_local": 0.3, "id": 1.0, "obc": 0.69,
              "obc_acc": 0.5, "twin": 0.25, "lr": 1e-3, "images_per_s": 10.0}
    with caplog.at_level(logging.INFO):
        log_epoch(record, 3, False, obc=False, twin=True)
        log_epoch(record, 3, False, obc=False, twin=False)
    with_twin, without = [r.getMessage() for r in caplog.records][-2:]
    assert "twin 0.2500" in with_twin and "twin" not in without and "obc" not in without
