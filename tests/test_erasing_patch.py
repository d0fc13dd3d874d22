"""Random Erasing's "patch" fill: the erased box holds the same box of another identity's
training image (the recipe row ``erasing-patch``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from reid.data import HDF5Split, TrainTransform, TransformConfig, item_rng
from reid.data.datasets import PairedTrainSet, donor_row, transform_item
from reid.data.transforms import _resize
from reid.engine.config import TrainConfig
from reid.study_config import RECIPE_CELLS


def _patch_transform(**changes: object) -> TrainTransform:
    config = dict(size=(32, 16), flip=False, pad=0, random_erasing=True, erasing_p=1.0, erasing_fill="patch")
    return TrainTransform(TransformConfig(**(config | changes)))


def test_donor_row_is_always_another_identity_and_covers_them_all() -> None:
    pids = np.array([5, 5, 7, 7, 9, 9, 5])
    rows = np.array([0, 1, 2, 3, 4, 5])  # row 6 is not a candidate (an occluded copy, say)
    draws = np.linspace(0, 1, 400, endpoint=False)
    chosen = {donor_row(rows, pids, 5, d) for d in draws}
    assert chosen == {2, 3, 4, 5}
    assert donor_row(rows, pids, 5, 0.0) == 2 and donor_row(rows, pids, 5, 0.999999) == 5
    assert {donor_row(rows, pids, 9, d) for d in draws} == {0, 1, 2, 3}
    with pytest.raises(BadInputError, match="another identity"):
        donor_row(np.array([0, 1]), pids, 5, 0.3)


def test_patch_fill_copies_the_donors_box_and_leaves_the_rest() -> None:
    transform = _patch_transform()
    image = np.full((16, 8, 3), 40, dtype=np.uint8)  # stored at half size: resized to 32x16
    donor = np.random.default_rng(1).integers(0, 256, size=(16, 8, 3), dtype=np.uint8)
    for seed in range(20):
        params = transform.draw(item_rng(seed, 0, 0))
        assert params.erase is not None and params.erase_fill is None and 0 <= params.erase_donor < 1
        seen = []
        (out,), _ = transform_item(transform, [image], item_rng(seed, 0, 0), (-1, -1, -1, -1), (16, 8),
                                   donor=lambda draw: seen.append(draw) or donor)
        assert seen == [params.erase_donor]
        x, y, w, h = params.erase
        expected = _resize(donor, (32, 16)).transpose(2, 0, 1)[:, y:y + h, x:x + w]
        out = out.numpy()
        np.testing.assert_array_equal(out[:, y:y + h, x:x + w], expected)
        outside = np.ones(out.shape[1:], dtype=bool)
        outside[y:y + h, x:x + w] = False
        assert (out[:, outside] == 40).all()


def test_patch_fill_without_a_donor_is_refused() -> None:
    transform = _patch_transform()
    image = np.zeros((32, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="donor"):
        transform([image], item_rng(0, 0, 0))
    with pytest.raises(ValueError, match="donor"):
        transform_item(transform, [image], item_rng(0, 0, 0), (-1, -1, -1, -1), (32, 16))


def test_patch_fill_leaves_the_other_fills_draws_unchanged() -> None:
    # The donor draw is made only for "patch": the boxes of every other fill are unchanged.
    mean, patch = _patch_transform(erasing_fill="mean"), _patch_transform()
    for seed in range(30):
        assert mean.draw(item_rng(seed, 0, 0)).erase == patch.draw(item_rng(seed, 0, 0)).erase


def test_the_dataset_pastes_a_clean_training_image_of_another_identity(tiny_store) -> None:
    transform = _patch_transform()
    dataset = HDF5Split(tiny_store, "train", transform=transform, seed=3)
    manifest = dataset.manifest
    clean_rows = manifest.rows("clean")
    for index in range(0, len(dataset), 5):
        item = dataset[index]
        params = transform.draw(item_rng(3, 0, index))
        donor = donor_row(clean_rows.astype(np.int64), manifest.pid, item["pid"], params.erase_donor)
        assert manifest.pid[donor] != item["pid"] and not manifest.occluded[donor]
        x, y, w, h = params.erase
        expected = _resize(dataset.read_row(donor), (32, 16)).transpose(2, 0, 1)[:, y:y + h, x:x + w]
        np.testing.assert_array_equal(item["image"].numpy()[:, y:y + h, x:x + w], expected)
        if not manifest.occluded[item["row"]]:  # a clean row stays clean: no --erasing-labels
            assert not item["occluded"] and item["box"] == (-1.0, -1.0, -1.0, -1.0)
        again = dataset[index]
        assert torch.equal(again["image"], item["image"])  # the same key gives the same bytes


def test_pairs_get_the_same_patch_on_both_images(tiny_store) -> None:
    dataset = PairedTrainSet(tiny_store, transform=_patch_transform(), seed=0)
    for index in range(0, len(dataset), 7):
        item = dataset[index]
        params = dataset.transform.draw(item_rng(0, 0, index))
        x, y, w, h = params.erase
        clean, occluded = (t.numpy() for t in item["images"])
        np.testing.assert_array_equal(clean[:, y:y + h, x:x + w], occluded[:, y:y + h, x:x + w])


def test_the_grid_row_and_the_option() -> None:
    cell = next(c for c in RECIPE_CELLS if c.name == "erasing-patch")
    config = cell.train_config(TrainConfig(), data="d.h5", out="o")
    assert config.random_erasing and config.erasing_fill == "patch" and config.alpha == 1.0
    assert config.transform_config.erasing_fill == "patch"
