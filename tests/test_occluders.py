"""Occluders: fill colour, untouched pixels, box size and position, ranges, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.errors import BadInputError
from occsim.occluders import (
    OCCLUDERS,
    OccluderParams,
    get_occluder,
    mean_colour,
    occlude_black,
    occlude_mean,
    occlude_random,
)
from occsim.schema import OCCLUDER_NAMES, occ_type_code


def _image(h: int = 128, w: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _outside_mask(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    mask = np.ones(shape[:2], dtype=bool)
    mask[y : y + h, x : x + w] = False
    return mask


def test_every_occluder_has_a_stable_schema_code() -> None:
    for name in OCCLUDERS:  # each occluder's rows are stored under its own, non-zero code
        assert name in OCCLUDER_NAMES and occ_type_code(name) > 0
    # The codes are written into files: renumbering would silently relabel every existing file.
    assert [occ_type_code(n) for n in ("mean", "black", "random", "real", "pedestrian")] == [1, 2, 3, 4, 5]
    assert set(OCCLUDER_NAMES) == {*OCCLUDERS, "pedestrian"}
    with pytest.raises(BadInputError, match="--type 'noise'"):
        get_occluder("noise")
    # pedestrian needs another identity's image: not a single-image occluder.
    with pytest.raises(BadInputError, match=r"^--type 'pedestrian': pastes a region of another identity's image.*"
                                            r"occsim generate --type pedestrian"):
        get_occluder("pedestrian")


def test_mean_colour_hand_computed() -> None:
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[..., 0] = [[0, 1], [2, 3]]  # mean 1.5 -> rounds half up to 2
    image[..., 1] = [[10, 10], [10, 11]]  # mean 10.25 -> 10
    image[..., 2] = 255
    assert mean_colour(image).tolist() == [2, 10, 255]


def test_mean_fills_box_with_per_channel_mean_and_keeps_the_rest() -> None:
    image = _image()
    before = image.copy()
    occluded, box = occlude_mean(image, np.random.default_rng(0), OccluderParams(patch=50))
    x, y, w, h = box
    expected = image.reshape(-1, 3).astype(np.float64).mean(axis=0)
    patch = occluded[y : y + h, x : x + w].reshape(-1, 3).astype(np.int64)
    assert np.all(np.abs(patch - expected) <= 1.0)
    assert np.all(patch == patch[0])  # one flat colour, not a scaled texture
    outside = _outside_mask(image.shape, box)
    assert np.array_equal(occluded[outside], image[outside])
    assert np.array_equal(image, before)  # input untouched
    assert occluded.dtype == np.uint8 and occluded.shape == image.shape


def test_square_box_size_and_inside_image() -> None:
    image = _image()
    for seed in range(200):
        (x, y, w, h) = occlude_mean(image, np.random.default_rng(seed), OccluderParams(patch=50))[1]
        assert (w, h) == (50, 50)
        assert 0 <= x <= 64 - 50 and 0 <= y <= 128 - 50


def test_square_box_position_covers_the_range() -> None:
    image = _image()
    xs = {occlude_mean(image, np.random.default_rng(s), OccluderParams(patch=50))[1][0] for s in range(400)}
    assert min(xs) == 0 and max(xs) == 14  # uniform over 0..W-patch, both ends reached


def test_patch_larger_than_image_is_clipped() -> None:
    image = _image(40, 30)
    occluded, box = occlude_black(image, np.random.default_rng(3), OccluderParams(patch=50))
    assert box == (0, 0, 30, 40)
    assert not occluded.any()
    occluded, box = occlude_mean(_image(128, 64), np.random.default_rng(3), OccluderParams(patch=100))
    assert box[2:] == (64, 100) and box[0] == 0 and 0 <= box[1] <= 28


def test_black_fills_zero_and_keeps_the_rest() -> None:
    image = np.full((128, 64, 3), 200, dtype=np.uint8)
    occluded, box = occlude_black(image, np.random.default_rng(5), OccluderParams(patch=20))
    x, y, w, h = box
    assert (w, h) == (20, 20)
    assert not occluded[y : y + h, x : x + w].any()
    assert np.all(occluded[_outside_mask(image.shape, box)] == 200)
    assert int((occluded == 0).all(axis=2).sum()) == 400


def test_random_box_sizes_stay_in_range() -> None:
    params = OccluderParams(area_min=0.1, area_max=0.4, ratio_min=0.3, ratio_max=3.3)
    image = _image()
    height, width = image.shape[:2]
    ratios, areas = [], []
    for seed in range(500):
        occluded, (x, y, w, h) = occlude_random(image, np.random.default_rng(seed), params)
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
        # Sides are rounded to whole pixels: allow half a pixel on each side.
        area_lo = (math.sqrt(params.area_min * height * width) - 0.5) ** 2 / (height * width)
        assert area_lo * 0.9 <= w * h / (height * width) <= params.area_max + (w + h + 1) / (2 * height * width)
        assert params.ratio_min * (1 - 1.0 / w) - 0.01 <= h / w <= params.ratio_max * (1 + 1.0 / w) + 0.01
        patch = occluded[y : y + h, x : x + w].reshape(-1, 3)
        assert np.all(patch == mean_colour(image))
        ratios.append(h / w)
        areas.append(w * h / (height * width))
    # Log-uniform ratio: about as many boxes taller than wide as wider than tall (0.3..3.3 is symmetric in log).
    tall = np.mean(np.asarray(ratios) > 1)
    assert 0.35 < tall < 0.75
    assert min(areas) < 0.15 and max(areas) > 0.35  # the whole area range is used


def test_random_box_is_clipped_when_it_cannot_fit() -> None:
    # ratio 10 at half the area of a 64x64 image needs h = 143 > 64: every try fails, so it is clipped.
    params = OccluderParams(area_min=0.5, area_max=0.5, ratio_min=10.0, ratio_max=10.0)
    _, box = occlude_random(_image(64, 64), np.random.default_rng(0), params)
    x, y, w, h = box
    assert h == 64 and y == 0
    assert w == round(math.sqrt(0.5 * 64 * 64 / 10.0))
    assert 0 <= x <= 64 - w


@pytest.mark.parametrize("name", tuple(OCCLUDERS))  # pedestrian: tests/test_pedestrian.py
def test_deterministic_for_the_same_seed(name: str) -> None:
    image = _image()
    occluder = OCCLUDERS[name]
    a, box_a = occluder(image, np.random.default_rng(42), OccluderParams())
    b, box_b = occluder(image, np.random.default_rng(42), OccluderParams())
    assert box_a == box_b and np.array_equal(a, b)
    boxes = {occluder(image, np.random.default_rng(s), OccluderParams())[1] for s in range(20)}
    assert len(boxes) > 10  # different seeds move the box


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"shape \[H, W, 3\], got uint8 \(10, 10\)$"):
        occlude_mean(np.zeros((10, 10), dtype=np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"got float32 \(10, 10, 3\)"):
        occlude_mean(np.zeros((10, 10, 3), dtype=np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("params, option", [
    (OccluderParams(patch=0), "--patch"),
    (OccluderParams(area_min=0.0), "--area-min"),
    (OccluderParams(area_max=1.5), "--area-max"),
    (OccluderParams(area_min=0.5, area_max=0.2), "--area-min"),
    (OccluderParams(ratio_min=-1.0), "--ratio-min"),
    (OccluderParams(ratio_min=2.0, ratio_max=1.0), "--ratio-min"),
])
def test_invalid_params_name_the_option(params: OccluderParams, option: str) -> None:
    with pytest.raises(BadInputError, match=option):
        params.validate()
