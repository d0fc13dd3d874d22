"""Image transforms for training and evaluation, on uint8 arrays, with explicit random draws.

Why this shape:

* Every transform takes a *list* of images and one ``numpy.random.Generator``. The random
  parameters (flip, crop offset, erasing box) are drawn once per call and applied to every
  image in the list, so a clean image and its occluded copy receive exactly the same
  augmentation (the pair must differ only where the occluder is).
* The work in the worker processes stays on uint8 (cv2 resize, numpy slicing for flip and
  pad-and-crop, a slice fill for erasing): the output is a uint8 tensor of shape [3, H, W].
  Normalisation happens once per *batch* (in the collate of :mod:`reid.data.collate`, or
  on the device with :func:`normalize_batch`), so every image of a batch — clean and occluded
  halves alike — goes through the same arithmetic. There is no per-image normalisation that
  one half could skip (the bug of the paper's public code).
* Determinism: the generator is created by the dataset from (seed, epoch, position in the
  epoch) — see :func:`item_rng` — so results do not depend on the number of workers.

Order of the training transform (the torchreid / BoT recipe, ``random_erasing`` off by default):
resize to ``size`` (cv2.INTER_LINEAR) -> horizontal flip (p=0.5) -> pad ``pad`` px with zeros
and crop back to ``size`` at a random offset -> random erasing (optional) -> [3, H, W] uint8.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np
import torch

from reid.options import ERASING_FILLS

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Domain tag mixed into the per-item seed so that augmentation draws never coincide with
# the sampler's draws for the same (seed, epoch).
_AUGMENT_STREAM = 0xA06


@dataclass(frozen=True)
class TransformConfig:
    """Training-transform settings.

    Attributes:
        size: model input (H, W); stored images are resized to it (128x64 -> 256x128 is an upscale).
        flip: random horizontal flip with probability ``flip_p``.
        flip_p: flip probability.
        pad: zero padding in pixels before the random crop back to ``size``; 0 disables the crop.
        random_erasing: Random Erasing (Zhong et al. 2020) with the defaults below.
        erasing_p: probability of erasing one rectangle.
        erasing_area: (min, max) fraction of the image area erased.
        erasing_ratio: minimum aspect ratio h/w; ratios are drawn log-uniformly in [r, 1/r].
        erasing_fill: "mean" fills with the normalisation mean colour (0 after normalising, as
            torchvision's ``RandomErasing(value=0)``); "black" with 0; "random" with uniform
            random pixels; "mixed" draws one of those three per erased box (uniformly); "patch"
            copies the same box of another identity's training image (resized to ``size``, not
            flipped or cropped), so the occluder has real image content, as a passer-by or a
            bag has; the image comes from the dataset (see :func:`reid.data.datasets.transform_item`).
        erasing_labels: an erased box counts as an occlusion: the item of a clean row is
            labelled occluded with the box as its occluder box (the OBC and visibility targets;
            see :func:`reid.data.datasets.transform_item`).
        mean: per-channel mean used by :func:`normalize_batch`, in [0, 1] units.
        std: per-channel standard deviation used by :func:`normalize_batch`.
    """

    size: tuple[int, int] = (256, 128)
    flip: bool = True
    flip_p: float = 0.5
    pad: int = 10
    random_erasing: bool = False
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: float = 0.3
    erasing_fill: Literal["mean", "black", "random", "mixed", "patch"] = "mean"
    erasing_labels: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ValueError(f"size must be (H, W) with positive sides, got {self.size}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if self.erasing_fill not in ERASING_FILLS:
            raise ValueError(f"erasing_fill must be one of {ERASING_FILLS}, got {self.erasing_fill!r}")


@dataclass(frozen=True)
class AugmentParams:
    """The random draws of one training-transform call (shared by every image of the call).

    Attributes:
        flip: mirror horizontally.
        crop_y, crop_x: top-left corner of the crop inside the padded image, in [0, 2*pad].
        erase: (x, y, w, h) of the erased rectangle in output pixels, or None.
        erase_fill: uint8 fill, shape [3, h, w] (broadcastable), or None.
        erase_donor: for the "patch" fill, a uniform draw in [0, 1) that picks the donor image
            (the dataset maps it to a row of another identity); ``erase_fill`` stays None until
            the donor's pixels are read (:meth:`TrainTransform.with_donor`).
    """

    flip: bool
    crop_y: int
    crop_x: int
    erase: tuple[int, int, int, int] | None = None
    erase_fill: np.ndarray | None = None
    erase_donor: float | None = None


def item_rng(seed: int, epoch: int, slot: int) -> np.random.Generator:
    """Generator for one dataset item: a pure function of (seed, epoch, slot).

    ``slot`` is the item's position in the (unsharded) epoch, so the same item drawn twice in
    one batch gets two different augmentations, and the result does not depend on which worker
    process or which DDP rank computes it.
    """
    return np.random.default_rng([int(seed), int(epoch), int(slot), _AUGMENT_STREAM])


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [H, W, 3] with cv2.INTER_LINEAR (no-op when already that size)."""
    height, width = size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _check_images(images: Sequence[np.ndarray]) -> None:
    if not images:
        raise ValueError("expected at least one image")
    shape = images[0].shape
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
        if image.shape != shape:
            raise ValueError(f"images of one call must share a shape, got {shape} and {image.shape}")


class EvalTransform:
    """Resize only: list of uint8 [h, w, 3] RGB -> list of uint8 tensors [3, H, W].

    The generator argument is accepted (and ignored) so that datasets can call every
    transform the same way.
    """

    def __init__(self, size: tuple[int, int] = (256, 128)) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, images: Sequence[np.ndarray], rng: np.random.Generator | None = None) -> list[torch.Tensor]:
        _check_images(images)
        return [torch.from_numpy(np.ascontiguousarray(_resize(img, self.size).transpose(2, 0, 1))) for img in images]


class TrainTransform:
    """Training augmentation applied identically to every image of one call.

    ``transform([clean, occluded], rng)`` draws flip, crop offset and erasing box once and
    returns two uint8 tensors [3, H, W]; where the two inputs are equal, the outputs are equal.
    """

    def __init__(self, config: TransformConfig = TransformConfig()) -> None:
        self.config = config

    def draw(self, rng: np.random.Generator) -> AugmentParams:
        """Draw the random parameters of one call (order fixed: flip, crop, erasing)."""
        cfg = self.config
        height, width = cfg.size
        flip = bool(cfg.flip and rng.random() < cfg.flip_p)
        crop_y = int(rng.integers(0, 2 * cfg.pad + 1)) if cfg.pad else 0
        crop_x = int(rng.integers(0, 2 * cfg.pad + 1)) if cfg.pad else 0
        erase = None
        fill = None
        donor = None
        if cfg.random_erasing and rng.random() < cfg.erasing_p:
            erase = _draw_erasing_box(rng, height, width, cfg.erasing_area, cfg.erasing_ratio)
            if erase is not None:
                _, _, w, h = erase
                kind = cfg.erasing_fill
                if kind == "mixed":  # drawn only for "mixed", so the other fills' draws are unchanged
                    kind = ERASING_FILLS[int(rng.integers(0, 3))]
                if kind == "patch":  # one more draw, only for "patch": the donor image
                    donor = float(rng.random())
                elif kind == "random":
                    fill = rng.integers(0, 256, size=(3, h, w), dtype=np.uint8)
                elif kind == "black":
                    fill = np.zeros((3, 1, 1), dtype=np.uint8)
                else:
                    fill = np.asarray([round(255 * m) for m in cfg.mean], dtype=np.uint8).reshape(3, 1, 1)
        return AugmentParams(flip=flip, crop_y=crop_y, crop_x=crop_x, erase=erase, erase_fill=fill, erase_donor=donor)

    def with_donor(self, params: AugmentParams, donor: np.ndarray) -> AugmentParams:
        """``params`` with the "patch" fill taken from ``donor`` (uint8 [h, w, 3]): the erased box's
        pixels of the donor resized to ``size``, shape [3, h_box, w_box]."""
        if params.erase is None:
            return params
        x, y, w, h = params.erase
        patch = _resize(donor, self.config.size).transpose(2, 0, 1)[:, y : y + h, x : x + w]
        return dataclasses.replace(params, erase_fill=np.ascontiguousarray(patch))

    def apply(self, image: np.ndarray, params: AugmentParams) -> torch.Tensor:
        """One uint8 [h, w, 3] image -> uint8 tensor [3, H, W] with the given parameters."""
        cfg = self.config
        height, width = cfg.size
        chw = _resize(image, cfg.size).transpose(2, 0, 1)  # a view; copied once below
        if params.flip:
            chw = chw[:, :, ::-1]
        # Pad-and-crop without materialising the padded image: output pixel (y, x) takes the
        # resized pixel (y + crop_y - pad, x + crop_x - pad), zero where that falls outside.
        dy = params.crop_y - cfg.pad
        dx = params.crop_x - cfg.pad
        out = np.zeros((3, height, width), dtype=np.uint8)
        y0, y1 = max(0, -dy), min(height, height - dy)
        x0, x1 = max(0, -dx), min(width, width - dx)
        out[:, y0:y1, x0:x1] = chw[:, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
        if params.erase is not None:
            if params.erase_fill is None:
                raise ValueError("the 'patch' erasing fill needs its donor image: read it through a dataset "
                                 "(reid.data.datasets), or pass params from TrainTransform.with_donor")
            x, y, w, h = params.erase
            out[:, y : y + h, x : x + w] = params.erase_fill
        return torch.from_numpy(out)

    def __call__(self, images: Sequence[np.ndarray], rng: np.random.Generator) -> list[torch.Tensor]:
        _check_images(images)
        params = self.draw(rng)
        return [self.apply(image, params) for image in images]

    def transform_box(
        self, box: Sequence[float], params: AugmentParams, image_size: tuple[int, int]
    ) -> tuple[float, float, float, float]:
        """Where a stored-pixel box (x, y, w, h) lands in the output (x, y, w, h), as floats.

        Args:
            box: x, y, w, h in the pixels of an input image of ``image_size`` = (h, w).
            params: the draws applied.
            image_size: (height, width) of the input image.
        """
        cfg = self.config
        sy = cfg.size[0] / image_size[0]
        sx = cfg.size[1] / image_size[1]
        x, y, w, h = (float(v) for v in box)
        x_out, w_out = x * sx, w * sx
        if params.flip:
            x_out = cfg.size[1] - x_out - w_out
        return (x_out - (params.crop_x - cfg.pad), y * sy - (params.crop_y - cfg.pad), w_out, h * sy)


def _draw_erasing_box(
    rng: np.random.Generator, height: int, width: int, area: tuple[float, float], min_ratio: float
) -> tuple[int, int, int, int] | None:
    """Random Erasing's rectangle (x, y, w, h), or None when 10 attempts do not fit."""
    log_lo, log_hi = math.log(min_ratio), math.log(1.0 / min_ratio)
    for _ in range(10):
        target = rng.uniform(area[0], area[1]) * height * width
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if 0 < h < height and 0 < w < width:
            y = int(rng.integers(0, height - h + 1))
            x = int(rng.integers(0, width - w + 1))
            return (x, y, w, h)
    return None


def normalize_batch(
    images: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 images [B, 3, H, W] -> float32 ``(x / 255 - mean) / std``, on the same device.

    One affine map for the whole batch (x * a + b with a = 1 / (255 std), b = -mean / std),
    so every image of the batch is normalised identically.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_batch expects uint8 images, got {images.dtype} (already normalised?)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
    return normalize_inplace(images.to(torch.float32), mean, std)


def normalize_inplace(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """float32 pixel values in [0, 255], shape [B, 3, H, W] -> normalised, in place; returns it.

    (In-place mul_/add_: several times faster on the CPU than a broadcast addcmul.)
    """
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return images.mul_(1.0 / (255.0 * std_t)).add_(-mean_t / std_t)
