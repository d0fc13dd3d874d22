"""Occluders: pure functions that hide a box of a person image (docs/design.md, "Occluders").

Every occluder has the signature ``(image, rng, params) -> (occluded_image, box)`` where

- ``image`` is an RGB uint8 array, shape [H, W, 3], never modified;
- ``rng`` is the per-image :class:`numpy.random.Generator` (the generator derives it from
  ``(seed, split, row, type)``), the only source of randomness;
- ``box`` is ``(x, y, w, h)`` in pixels of ``image``, always inside it.

The patch is *filled*, not multiplied: Algorithm 1 of the paper fills it with the image's
per-channel mean colour (its public code multiplied the pixels by mean/255 instead, which
darkens the texture rather than hiding it).

Each occluder is two steps, kept apart so that the generator can draw every box (cheap,
content-independent) before the pixels are decoded: :meth:`Occluder.sample_box` uses the rng
and the image's shape only, :meth:`Occluder.fill_colour` the pixels only. Calling the
occluder runs both, so ``OCCLUDERS["mean"](image, rng, params)`` and the generator give the
same result for the same rng.

``pedestrian`` is not one of these single-image functions: it pastes a region of *another*
row's image (another identity of the split), so it lives in :mod:`occsim.pedestrian` and only
``occsim generate`` applies it; :func:`get_occluder` refuses it.

The occlusion is applied at the *stored* size (default 128x64): ``patch=50`` hides 50x50 of
the 128x64 image that the HDF5 file holds, as the paper did on Market's native 128x64 crops.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from common.errors import BadInputError
from common.options import Option, validate_options
from occsim.schema import OCCLUDER_NAMES

logger = logging.getLogger(__name__)

SQUARE_OCCLUDERS: tuple[str, ...] = ("mean", "black")  # the --patch square ones
PASTED_OCCLUDERS: tuple[str, ...] = ("pedestrian",)  # need another image: occsim.pedestrian

Box = tuple[int, int, int, int]  # x, y, w, h

# Random Erasing draws until the box fits; with the default ranges on a 128x64 image about
# one draw in three is too wide, so 100 tries leave a chance of about 1e-48 of clipping.
RANDOM_BOX_TRIES = 100


_AREA = dict(low=0.0, high=1.0, low_open=True, why="must be a fraction of the image in (0, 1], e.g. 0.1")
_RATIO = dict(low=0.0, low_open=True, why="must be a positive aspect ratio h/w, e.g. 0.3")


@dataclass(frozen=True)
class OccluderParams:
    """Parameters of the occluders (the same for every image of a run).

    Attributes:
        patch: side in stored pixels of the ``mean`` and ``black`` square (clipped to the image;
            a square that would cover all of it is refused, see :meth:`check_fits`).
        area_min, area_max: range of the ``random`` and ``pedestrian`` boxes' area as a fraction
            of the image's.
        ratio_min, ratio_max: range of the ``random`` box's aspect ratio h / w (drawn log-uniformly).
    """

    patch: int = Option(50, "Side in stored pixels of the mean/black square.", low=1,
                        why="must be a positive whole number of pixels, e.g. 50").field()
    area_min: float = Option(0.1, "random, pedestrian: smallest box area (fraction of the image).",
                             **_AREA).field()
    area_max: float = Option(0.4, "random, pedestrian: largest box area (fraction of the image).",
                             **_AREA).field()
    ratio_min: float = Option(0.3, "random: smallest aspect ratio h/w.", **_RATIO).field()
    ratio_max: float = Option(3.3, "random: largest aspect ratio h/w.", **_RATIO).field()

    def validate(self) -> None:
        """Raise :class:`BadInputError` naming the option when a value is out of range: each
        field against its declared bounds, then the pairs."""
        if isinstance(self.patch, bool) or not isinstance(self.patch, (int, np.integer)):
            raise BadInputError(f"--patch {self.patch!r}: must be a positive whole number of pixels, e.g. 50")
        validate_options(self)
        if self.area_min > self.area_max:
            raise BadInputError(f"--area-min {self.area_min} is larger than --area-max {self.area_max}; swap them")
        if self.ratio_min > self.ratio_max:
            raise BadInputError(f"--ratio-min {self.ratio_min} is larger than --ratio-max {self.ratio_max}; swap them")

    def check_fits(self, image_size: tuple[int, int], types: tuple[str, ...]) -> None:
        """Refuse a ``mean``/``black`` square that would cover the whole stored image (every
        occluded copy one flat colour); warn when it is clipped to the image on one side.

        Args:
            image_size: stored (H, W).
            types: the occluder names of the run.
        """
        if not set(types) & set(SQUARE_OCCLUDERS):
            return
        height, width = int(image_size[0]), int(image_size[1])
        if self.patch >= height and self.patch >= width:
            raise BadInputError(
                f"--patch {self.patch}: the square covers the whole {height}x{width} stored image, so every occluded "
                f"copy would be one flat colour; use a --patch of at most {min(height, width) - (height == width)} "
                f"or a larger --size")
        if self.patch > min(height, width):
            logger.warning("--patch %d is wider than the %dx%d stored image: the box is clipped to %dx%d",
                           self.patch, height, width, min(self.patch, height), min(self.patch, width))


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image of shape [H, W, 3], got {image.dtype} {image.shape}")


def square_box(image_hw: tuple[int, int], patch: int, rng: np.random.Generator) -> Box:
    """A ``patch`` x ``patch`` square (each side clipped to the image) at a uniformly random position.

    Args:
        image_hw: (H, W) of the image.
        patch: side in pixels.
        rng: draws two integers (y, then x).
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    h, w = min(int(patch), height), min(int(patch), width)
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    return x, y, w, h


def random_box(image_hw: tuple[int, int], params: OccluderParams, rng: np.random.Generator) -> Box:
    """A box of random area and aspect ratio, as Random Erasing draws it.

    The area fraction is uniform in [area_min, area_max] and the ratio h / w log-uniform in
    [ratio_min, ratio_max]; draws that do not fit the image are retried (up to
    :data:`RANDOM_BOX_TRIES`), after which the last one is clipped to the image. The position
    is uniform over the places where the box fits.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    area = height * width
    log_lo, log_hi = math.log(params.ratio_min), math.log(params.ratio_max)
    h = w = 1
    for _ in range(RANDOM_BOX_TRIES):
        target = float(rng.uniform(params.area_min, params.area_max)) * area
        ratio = math.exp(float(rng.uniform(log_lo, log_hi)))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if 1 <= h <= height and 1 <= w <= width:
            break
    else:
        h, w = min(max(h, 1), height), min(max(w, 1), width)
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    return x, y, w, h


def mean_colour(image: np.ndarray) -> np.ndarray:
    """Per-channel mean of ``image`` (shape [H, W, 3]) rounded half up, shape [3] uint8."""
    import cv2  # here, not at the top: the option declarations above are read by `occsim --help`

    means = cv2.mean(image)[:3]  # float64 sums: exact for any image size we store
    return np.array([math.floor(m + 0.5) for m in means], dtype=np.uint8)


def black_colour(image: np.ndarray) -> np.ndarray:
    """Zero in every channel, shape [3] uint8 (section 6.4 of the paper)."""
    return np.zeros(3, dtype=np.uint8)


def fill_box(image: np.ndarray, box: Box, colour: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` (shape [H, W, 3]) with ``box`` filled by ``colour`` (shape [3]).

    ``out``, when given, receives the copy (the generator passes a row of its output block).
    """
    if out is None:
        out = image.copy()
    elif out is not image:
        out[...] = image
    x, y, w, h = box
    patch = out[y : y + h, x : x + w]
    # First row by broadcasting, then whole rows: broadcasting a 3-vector over every pixel
    # is ten times slower, and the generator does this for every occluded row.
    patch[0] = colour
    patch[1:] = patch[0]
    return out


@dataclass(frozen=True)
class Occluder:
    """One occluder: how it places its box and what colour it fills it with.

    Calling it is the pure function ``(image, rng, params) -> (occluded_image, box)``.
    """

    name: str
    sample_box: Callable[[tuple[int, int], OccluderParams, np.random.Generator], Box]
    fill_colour: Callable[[np.ndarray], np.ndarray]

    def __call__(self, image: np.ndarray, rng: np.random.Generator,
                 params: OccluderParams = OccluderParams()) -> tuple[np.ndarray, Box]:
        """Occlude ``image`` (RGB uint8, shape [H, W, 3]); returns a new image and the box."""
        _check_image(image)
        box = self.sample_box(image.shape[:2], params, rng)
        return fill_box(image, box, self.fill_colour(image)), box


def _square(image_hw: tuple[int, int], params: OccluderParams, rng: np.random.Generator) -> Box:
    return square_box(image_hw, params.patch, rng)


occlude_mean = Occluder("mean", _square, mean_colour)
"""A ``patch``-px square at a uniformly random position, filled with the image's mean colour (Algorithm 1)."""

occlude_black = Occluder("black", _square, black_colour)
"""The same square as ``mean``, filled with 0."""

occlude_random = Occluder("random", random_box, mean_colour)
"""A Random-Erasing-like box (random area fraction and aspect ratio), mean-colour fill."""

OCCLUDERS: Mapping[str, Occluder] = MappingProxyType(
    {occ.name: occ for occ in (occlude_mean, occlude_black, occlude_random)}
)
# One function (or pasted occluder) per name in the schema's enum, so a new occluder cannot be
# half-registered.
assert sorted([*OCCLUDERS, *PASTED_OCCLUDERS]) == sorted(OCCLUDER_NAMES), (tuple(OCCLUDERS), OCCLUDER_NAMES)


def get_occluder(name: str) -> Occluder:
    """The single-image occluder called ``name``; :class:`BadInputError` naming the known ones
    otherwise, and for ``pedestrian`` (it needs another identity's image, see :mod:`occsim.pedestrian`)."""
    if name in PASTED_OCCLUDERS:
        raise BadInputError(f"--type {name!r}: pastes a region of another identity's image, so it cannot occlude "
                            f"one image on its own; use `occsim generate --type {name}` (or one of "
                            f"{', '.join(OCCLUDERS)})")
    try:
        return OCCLUDERS[name]
    except KeyError:
        raise BadInputError(f"--type {name!r}: unknown occlusion type; use one of {', '.join(OCCLUDERS)}") from None
