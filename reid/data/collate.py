"""The batch type and the collate functions that build it from dataset items.

* :class:`Batch` — what the loaders yield. Items are uint8 [3, H, W]. By default the loaders
  stack them into a uint8 batch (4x fewer bytes between processes and to the GPU than
  float32) and ``batch.to(device)`` normalises the whole batch in one operation on the
  device; with ``normalize_in_workers=True`` the collate normalises the stacked batch in the
  worker instead. Either way the trainer writes ``batch = batch.to(device)`` and gets float32
  normalised images [B, 3, H, W], and the clean and occluded halves of a joint batch cannot
  be normalised differently.
* :class:`CollateItems` — :class:`~reid.data.datasets.HDF5Split` items -> :class:`Batch` of B images.
* :class:`CollatePairs` — :class:`~reid.data.datasets.PairedTrainSet` items -> :class:`Batch` of
  2n images (n clean, then their n occluded copies).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

import torch
import torch.utils.data

from reid.data.datasets import NO_BOX_F
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_batch, normalize_inplace


@dataclass
class Batch:
    """One batch, as the loaders yield it.

    Attributes:
        images: [B, 3, H, W]: float32 normalised, or uint8 from a collate built with
            ``normalize=False`` (then :meth:`to` normalises on the device).
        pids: identities, int64 [B].
        labels: train class indices, int64 [B] (-1 outside train).
        camids: cameras, int64 [B].
        occluded: True for occluded images, bool [B] (the OBC target as ``occluded.long()``).
        occ_type: occluder codes, int64 [B].
        rows: rows in the split, int64 [B].
        clean_index: row of each image's clean original, int64 [B].
        boxes: occluder (x, y, w, h) in the pixels of ``images``, float32 [B, 4], -1s when
            none (clean rows, ``real`` occlusions); None from a collate that does not know them.
        mean, std: the normalisation :meth:`to` applies.

    In a joint (``--train-on both``) batch of P x K pairs, B = 2PK: the PK clean images first,
    then their occluded copies in the same order (``images[i]`` and ``images[i + B // 2]`` are
    a pair).
    """

    images: torch.Tensor
    pids: torch.Tensor
    labels: torch.Tensor
    camids: torch.Tensor
    occluded: torch.Tensor
    occ_type: torch.Tensor
    rows: torch.Tensor
    clean_index: torch.Tensor
    boxes: torch.Tensor | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def _tensor_fields(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)]

    def pin_memory(self) -> "Batch":
        """Called by DataLoader(pin_memory=True)."""
        return replace(self, **{name: getattr(self, name).pin_memory() for name in self._tensor_fields()})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """Move to ``device``; uint8 images are normalised there, so ``images`` is always float32."""
        moved = {name: getattr(self, name).to(device, non_blocking=non_blocking) for name in self._tensor_fields()}
        if moved["images"].dtype == torch.uint8:
            moved["images"] = normalize_batch(moved["images"], self.mean, self.std)
        return replace(self, **moved)


def _long(values: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.int64)


def _boxes(values: Sequence[Sequence[float]]) -> torch.Tensor:
    """Item boxes -> float32 [B, 4] (items without a ``box`` key get -1s)."""
    return torch.as_tensor(values, dtype=torch.float32).reshape(-1, 4)


def _batch_buffer(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty batch tensor; inside a DataLoader worker it lives in shared memory, so the
    batch reaches the main process without being copied again when it is sent."""
    buffer = torch.empty(shape, dtype=dtype)
    return buffer if torch.utils.data.get_worker_info() is None else buffer.share_memory_()


def _batch_images(
    images: list[torch.Tensor], normalize: bool, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """uint8 [3, H, W] tensors -> [B, 3, H, W]: float32 normalised in one operation, or uint8."""
    out = _batch_buffer((len(images), *images[0].shape), torch.float32 if normalize else torch.uint8)
    for i, image in enumerate(images):
        out[i].copy_(image)  # uint8 -> float32 conversion happens here when normalising
    return normalize_inplace(out, mean, std) if normalize else out


@dataclass(frozen=True)
class CollateItems:
    """Collate for :class:`HDF5Split` items -> :class:`Batch`.

    Attributes:
        mean, std: normalisation statistics.
        normalize: True: float32 normalised images; False: uint8 images (``Batch.to`` normalises).
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: bool = True

    def __call__(self, items: list[dict[str, Any]]) -> Batch:
        return Batch(
            images=_batch_images([item["image"] for item in items], self.normalize, self.mean, self.std),
            pids=_long([item["pid"] for item in items]),
            labels=_long([item["label"] for item in items]),
            camids=_long([item["camid"] for item in items]),
            occluded=torch.as_tensor([item["occluded"] for item in items], dtype=torch.bool),
            occ_type=_long([item["occ_type"] for item in items]),
            rows=_long([item["row"] for item in items]),
            clean_index=_long([item["clean_index"] for item in items]),
            boxes=_boxes([item.get("box", NO_BOX_F) for item in items]),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )


@dataclass(frozen=True)
class CollatePairs:
    """Collate for :class:`PairedTrainSet` items -> :class:`Batch` of 2n images: n clean, then
    their n occluded copies, normalised together in one operation (see :class:`CollateItems`)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    normalize: bool = True

    def __call__(self, items: list[dict[str, Any]]) -> Batch:
        n = len(items)
        images = [item["images"][0] for item in items] + [item["images"][1] for item in items]
        pids = [item["pid"] for item in items] * 2
        labels = [item["label"] for item in items] * 2
        camids = [item["camid"] for item in items] * 2
        clean_rows = [item["rows"][0] for item in items]
        return Batch(
            images=_batch_images(images, self.normalize, self.mean, self.std),
            pids=_long(pids),
            labels=_long(labels),
            camids=_long(camids),
            occluded=torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
            occ_type=_long([0] * n + [item["occ_type"] for item in items]),
            rows=_long(clean_rows + [item["rows"][1] for item in items]),
            clean_index=_long(clean_rows * 2),
            boxes=_boxes([NO_BOX_F] * n + [item.get("box", NO_BOX_F) for item in items]),
            mean=tuple(self.mean),
            std=tuple(self.std),
        )
