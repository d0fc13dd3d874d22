"""Torch datasets over the occluded-reid HDF5 file, and the training dataset of each ``--train-on``.

* :class:`HDF5Split` — one split (or a subset of its rows), one image per item.
* :class:`OcclusionAugmentSet` — ``--train-on augment``: a clean train row, replaced by one of
  its occluded copies with probability p(epoch).
* :class:`PairedTrainSet` — ``--train-on both``: an item is a clean train row plus one of its
  occluded copies, transformed with the *same* random draws.
* :func:`build_train_dataset` — the dataset for ``--train-on clean|occluded|both|augment``.

Items are dicts holding uint8 image tensors [3, H, W] (batched by :mod:`reid.data.collate`).
Every item also carries the occluder ``box`` in *network-input* pixels, after the item's own
flip / crop / resize (see :func:`transform_item`), so that the per-stripe visibility target
(:func:`reid.losses.visibility.stripe_coverage`) matches the pixels the model sees.

The h5py file is opened lazily by whichever process reads pixels first, and reopened when the
process id changes (a forked DataLoader worker); the open handle is never pickled. Pixels are
read one row at a time (the images dataset is chunked one image per chunk).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.utils.data

from common.errors import BadInputError
from occsim.store import CheckedImages, SplitManifest, open_h5, read_store
from reid.data.sampler import SampleKey
from reid.data.transforms import EvalTransform, TrainTransform, TransformConfig, item_rng
from reid.options import TRAIN_ON  # declared once, torch-free (TrainConfig's choices)

logger = logging.getLogger(__name__)


TrainOn = Literal["clean", "occluded", "both", "augment"]
# A transform maps a list of uint8 [h, w, 3] images plus one generator to a list of
# uint8 tensors [3, H, W], applying the same random draws to every image of the list.
Transform = Callable[[Sequence[np.ndarray], np.random.Generator], list[torch.Tensor]]
#: The ``box`` of an item without an occluder box (a clean row, a ``real`` occlusion, or a
#: transform that cannot say where the box lands): the HDF5 ``NO_BOX`` convention, as floats.
NO_BOX_F: tuple[float, float, float, float] = (-1.0, -1.0, -1.0, -1.0)
Box = tuple[float, float, float, float]


def _clip_box(box: Sequence[float], size: tuple[int, int]) -> Box:
    """(x, y, w, h) clipped to the frame [0, W] x [0, H]; a box pushed out of it keeps w or h 0."""
    height, width = size
    x, y, w, h = (float(v) for v in box)
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return (x0, y0, x1 - x0, y1 - y0)


def transform_item(
    transform: Transform | None,
    images: Sequence[np.ndarray],
    rng: np.random.Generator,
    box: Sequence[int],
    image_size: tuple[int, int],
    donor: Callable[[float], np.ndarray] | None = None,
) -> tuple[list[torch.Tensor], Box]:
    """Transform the images of one item and say where the stored occluder box lands.

    Args:
        transform: see :data:`Transform`; None keeps the stored pixels.
        images: uint8 [h, w, 3] images of one item (the same random draws for all).
        rng: the item's generator.
        box: the stored (x, y, w, h) of the occluder in stored pixels, -1s when none.
        image_size: (h, w) of the stored images.
        donor: for Random Erasing's "patch" fill: maps the transform's donor draw in [0, 1) to
            the donor image, uint8 [h, w, 3] (see :func:`donor_row`); None when the dataset has none.

    Returns:
        uint8 tensors [3, H, W], and the box (x, y, w, h) as floats in output pixels (after
        resize, flip and pad-and-crop), clipped to the output frame, so every coordinate is
        >= 0; :data:`NO_BOX_F` when the row has no box, or when ``transform`` is neither
        :class:`TrainTransform` nor :class:`EvalTransform` (its geometry is unknown). Random
        erasing is not an occluder of the file and is not part of the box, except with
        ``erasing_labels`` (:class:`TransformConfig`): then a row without a box that was
        erased gets the erased box (already in output pixels), so it can be labelled occluded.
    """
    if transform is None:
        tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) for image in images]
        out_box, out_size = tuple(float(v) for v in box), image_size
    elif isinstance(transform, TrainTransform):
        # draw + apply is exactly TrainTransform.__call__, with the draws kept for the box.
        params = transform.draw(rng)
        if params.erase_donor is not None and donor is not None:  # without one, apply() refuses the fill
            params = transform.with_donor(params, donor(params.erase_donor))
        tensors = [transform.apply(image, params) for image in images]
        out_box, out_size = transform.transform_box(box, params, image_size), transform.config.size
        if transform.config.erasing_labels and params.erase is not None and any(v < 0 for v in box):
            return tensors, tuple(float(v) for v in params.erase)
    elif isinstance(transform, EvalTransform):
        tensors = transform(images, rng)
        sy, sx = transform.size[0] / image_size[0], transform.size[1] / image_size[1]
        x, y, w, h = (float(v) for v in box)
        out_box, out_size = (x * sx, y * sy, w * sx, h * sy), transform.size
    else:
        return transform(images, rng), NO_BOX_F
    if any(v < 0 for v in box):
        return tensors, NO_BOX_F
    return tensors, _clip_box(out_box, out_size)


class _LazyImages:
    """Per-process lazy handle on ``/<split>/images``; picklable (the handle is dropped)."""

    def __init__(self, path: Path, split: str) -> None:
        self.path = path
        self.split = split
        self._file: Any = None
        self._images: Any = None
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "_file": None, "_images": None, "_pid": None}

    def _dataset(self) -> Any:
        pid = os.getpid()
        if self._pid != pid:
            # A handle inherited through fork belongs to the parent's HDF5 state: never use it.
            self._file = open_h5(self.path)
            self._images = CheckedImages(self._file, self.split, self.path)
            self._pid = pid
        return self._images

    def read(self, row: int) -> np.ndarray:
        """One stored image, uint8 [h, w, 3] RGB (a per-row read), checked against its CRC-32
        (and, by HDF5, its Fletcher32) where the file has them: one-line BadInputError naming
        the file, split and row otherwise."""
        return self._dataset().read(int(row))

    @property
    def is_open(self) -> bool:
        return self._pid == os.getpid()

    def close(self) -> None:
        if self._pid == os.getpid() and self._file is not None:
            self._file.close()
        self._file = self._images = self._pid = None


def _unpack(key: int | SampleKey, default_epoch: int) -> tuple[int, int, int]:
    """(index, epoch, slot) of a dataset key; a bare index uses the dataset's epoch and slot = index."""
    if isinstance(key, SampleKey):
        return int(key.index), int(key.epoch), int(key.slot)
    if isinstance(key, tuple):
        index, epoch, slot = key
        return int(index), int(epoch), int(slot)
    return int(key), default_epoch, int(key)


def donor_row(rows: np.ndarray, pids: np.ndarray, own_pid: int, draw: float) -> int:
    """The donor of Random Erasing's "patch" fill: one of ``rows`` whose identity is not ``own_pid``.

    Args:
        rows: candidate split rows, shape [R] (the split's clean rows).
        pids: identity of every split row, shape [N].
        own_pid: identity of the item being erased.
        draw: uniform in [0, 1) (:attr:`reid.data.transforms.AugmentParams.erase_donor`).

    Raises:
        BadInputError: no row of another identity.
    """
    candidates = rows[pids[rows] != own_pid]
    if len(candidates) == 0:
        raise BadInputError("the 'patch' erasing fill needs a training image of another identity, and the "
                            "train split has one identity; use another --erasing-fill")
    return int(candidates[min(int(draw * len(candidates)), len(candidates) - 1)])


class _KeyedDataset(torch.utils.data.Dataset):
    """What the datasets below share: the epoch of bare-int keys, the lazy per-process
    handle on the split's images, and the donor images of Random Erasing's "patch" fill."""

    epoch: int
    _images: _LazyImages
    manifest: SplitManifest
    _clean_rows: np.ndarray | None = None

    def donor(self, own_pid: int) -> Callable[[float], np.ndarray]:
        """A donor-draw -> image map for an item of identity ``own_pid``: a clean image of this
        split of another identity (:func:`donor_row`), uint8 [h, w, 3]."""
        def read(draw: float) -> np.ndarray:
            if self._clean_rows is None:
                self._clean_rows = self.manifest.rows("clean").astype(np.int64)
            return self._images.read(donor_row(self._clean_rows, self.manifest.pid, own_pid, draw))
        return read

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for bare-int keys (keyed samplers carry their own epoch)."""
        self.epoch = int(epoch)

    def close(self) -> None:
        """Close this process's file handle (the next read reopens it)."""
        self._images.close()


class HDF5Split(_KeyedDataset):
    """One split of an occluded-reid file, one image per item.

    Args:
        path: the HDF5 file.
        split: "train", "query" or "gallery".
        rows: the split's rows this dataset covers, in this order (default: all rows).
        transform: see :data:`Transform`; None returns the stored pixels as [3, h, w] uint8.
        seed: base seed of the augmentation draws (see :func:`reid.data.transforms.item_rng`).

    Items (``dataset[i]`` with an int or a :class:`~reid.data.sampler.SampleKey`) are dicts:
    ``image`` uint8 tensor [3, H, W]; ``pid``, ``label`` (-1 outside train), ``camid``,
    ``occ_type``, ``clean_index``, ``row`` ints; ``occluded`` bool; ``box`` the occluder's
    (x, y, w, h) floats in the pixels of ``image`` (see :func:`transform_item`), -1s when none.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str,
        rows: np.ndarray | Sequence[int] | None = None,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(path)
        info = read_store(self.path)
        if split not in info.splits:
            raise BadInputError(f"{self.path}: no split {split!r}; use one of {', '.join(info.splits)}")
        self.split = split
        self.manifest: SplitManifest = info.splits[split]
        self.image_size = info.image_size
        self.fingerprint = info.fingerprint
        n = len(self.manifest)
        self.rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= n):
            raise ValueError(f"rows outside the {n} rows of split {split!r}")
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._images = _LazyImages(self.path, split)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def pids(self) -> np.ndarray:
        """Identity of every item, shape [len(self)] int32 (what a PK sampler groups by)."""
        return self.manifest.pid[self.rows]

    def read_row(self, row: int) -> np.ndarray:
        """Stored pixels of one split row, uint8 [h, w, 3] RGB."""
        return self._images.read(row)

    def row_for(self, index: int, epoch: int, slot: int) -> int:
        """The split row item ``index`` reads (subclasses may choose another row per draw)."""
        return int(self.rows[index])

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, epoch, slot = _unpack(key, self.epoch)
        row = self.row_for(index, epoch, slot)
        image = self._images.read(row)
        rng = item_rng(self.seed, epoch, slot)
        (tensor,), box = transform_item(self.transform, [image], rng, self.manifest.box[row], self.image_size,
                                        donor=self.donor(int(self.manifest.pid[row])))
        fields = _item_fields(self.manifest, row)
        if not fields["occluded"] and box != NO_BOX_F:  # erased, and erasing counts as an occlusion
            fields["occluded"] = True
        return fields | {"image": tensor, "box": box}


def _item_fields(manifest: SplitManifest, row: int) -> dict[str, Any]:
    return {
        "pid": int(manifest.pid[row]),
        "label": int(manifest.label[row]) if manifest.label is not None else -1,
        "camid": int(manifest.camid[row]),
        "occluded": bool(manifest.occluded[row]),
        "occ_type": int(manifest.occ_type[row]),
        "clean_index": int(manifest.clean_index[row]),
        "row": row,
    }


def copies_by_clean_row(manifest: SplitManifest, occluded_rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group occluded rows by the clean row they copy.

    Args:
        manifest: the split's manifest.
        occluded_rows: occluded rows of the split, shape [M], any order.

    Returns:
        clean_rows: shape [C] int64, ascending, the clean rows that have at least one copy;
        copies: C arrays, ``copies[i]`` the occluded rows of ``clean_rows[i]`` in the order given.
    """
    occluded_rows = np.asarray(occluded_rows)
    owners = manifest.clean_index[occluded_rows]
    order = np.argsort(owners, kind="stable")
    owners, occluded_rows = owners[order], occluded_rows[order]
    clean_rows, starts = np.unique(owners, return_index=True)
    ends = np.append(starts[1:], len(owners))
    return clean_rows.astype(np.int64), [occluded_rows[s:e].astype(np.int64) for s, e in zip(starts, ends)]


class OcclusionAugmentSet(HDF5Split):
    """``--train-on augment``: occlusion as a per-image augmentation, no twin in the batch.

    Item i is clean train row ``rows[i]``, replaced, with probability ``p(epoch)``, by one of its
    stored occluded copies (picked uniformly; only the ``occluder_types`` asked for). The draw
    comes from its own generator keyed by (seed, epoch, slot), so it is reproducible, does not
    change the augmentation draws, and a clean image and its occluded copy meet in a batch only
    when the P x K sampler draws the same clean row twice. ``p(epoch)`` is ``p`` from the first
    epoch (``ramp_epochs=0``) or ramps linearly from 0 at epoch 0 to ``p`` at epoch
    ``ramp_epochs`` (0-based) and stays there. Clean rows without a copy are never replaced.
    The item's ``occluded`` / ``occ_type`` / ``row`` fields describe the row actually read, so
    the OBC target is right; ``clean_index`` keeps the twin relation.

    Raises:
        BadInputError: the train split has no occluded copies (of the asked types), or p is
            outside [0, 1].
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Transform | None = None,
        seed: int = 0,
        occluder_types: Sequence[str] = (),
        p: float = 0.5,
        ramp_epochs: int = 0,
    ) -> None:
        if not 0.0 <= p <= 1.0:
            raise BadInputError(f"--occlusion-p {p}: must be between 0 and 1")
        if ramp_epochs < 0:
            raise BadInputError(f"--occlusion-ramp-epochs {ramp_epochs}: must be >= 0 (0 = no ramp)")
        super().__init__(path, "train", transform=transform, seed=seed)  # reads the file once
        manifest = self.manifest
        occluded_rows = occluded_rows_of_types(manifest, occluder_types, Path(path))
        if len(occluded_rows) == 0:
            raise BadInputError(
                f"{path}: the train split has no occluded copies, so --train-on augment has nothing to draw; "
                "use --train-on clean or regenerate the file with occlusion"
            )
        self.rows = manifest.rows("clean").astype(np.int64)
        owners, copies = copies_by_clean_row(manifest, occluded_rows)
        by_owner = dict(zip(owners.tolist(), copies))
        empty = np.zeros(0, dtype=np.int64)
        self.copies: list[np.ndarray] = [by_owner.get(int(r), empty) for r in self.rows]
        self.p = float(p)
        self.ramp_epochs = int(ramp_epochs)

    def occlusion_probability(self, epoch: int) -> float:
        """p(epoch): the chance that an item of this (0-based) epoch is read occluded."""
        if self.ramp_epochs == 0:
            return self.p
        return self.p * min(1.0, epoch / self.ramp_epochs)

    def row_for(self, index: int, epoch: int, slot: int) -> int:
        copies = self.copies[index]
        clean_row = int(self.rows[index])
        if len(copies) == 0:
            return clean_row
        rng = np.random.default_rng([self.seed, int(epoch), int(slot), _OCCLUSION_STREAM])
        if rng.random() >= self.occlusion_probability(epoch):
            return clean_row
        return int(copies[rng.integers(len(copies))])


#: Stream id of the occlusion draws of :class:`OcclusionAugmentSet`, apart from the augmentation's.
_OCCLUSION_STREAM = 0x0CC1


class PairedTrainSet(_KeyedDataset):
    """``--train-on both``: item i is (clean train row, one of its occluded copies).

    The occluded copy is chosen per item with the item's generator (so a clean row with copies
    of several occluder types shows a random one, reproducibly), and both images go through
    one transform call: the same flip, crop offset and erasing rectangle.

    Clean rows without any occluded copy are left out (logged).

    Items are dicts: ``images`` list of two uint8 tensors [3, H, W] (clean, occluded);
    ``pid``, ``label``, ``camid`` ints; ``rows`` (clean row, occluded row);
    ``occ_type`` and ``box`` of the copy (``box`` as in :class:`HDF5Split`; the clean image
    has none).

    ``occluder_types`` keeps only copies of those types (empty = every type).

    Raises:
        BadInputError: the train split has no occluded copies (of the asked types).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Transform | None = None,
        seed: int = 0,
        occluder_types: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        info = read_store(self.path)
        self.manifest: SplitManifest = info.splits["train"]
        self.image_size = info.image_size
        self.fingerprint = info.fingerprint
        m = self.manifest
        occluded_rows = occluded_rows_of_types(m, occluder_types, self.path)
        if len(occluded_rows) == 0:
            raise BadInputError(
                f"{self.path}: the train split has no occluded copies, so --train-on both has nothing to pair; "
                "use --train-on clean or regenerate the file with occlusion"
            )
        self.clean_rows, self.copies = copies_by_clean_row(m, occluded_rows)
        if np.any(m.occluded[self.clean_rows]):
            raise BadInputError(f"{self.path}: train clean_index points at occluded rows; regenerate it with `occsim generate`")
        missing = int((~m.occluded).sum()) - len(self.clean_rows)
        if missing:
            logger.warning("%s: %d clean train rows have no occluded copy and are left out of --train-on both", self.path, missing)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._images = _LazyImages(self.path, "train")

    def __len__(self) -> int:
        return len(self.clean_rows)

    @property
    def pids(self) -> np.ndarray:
        """Identity of every item (pair), shape [len(self)] int32."""
        return self.manifest.pid[self.clean_rows]

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, epoch, slot = _unpack(key, self.epoch)
        rng = item_rng(self.seed, epoch, slot)
        clean_row = int(self.clean_rows[index])
        copies = self.copies[index]
        occluded_row = int(copies[rng.integers(len(copies))]) if len(copies) > 1 else int(copies[0])
        images = [self._images.read(clean_row), self._images.read(occluded_row)]
        m = self.manifest
        tensors, box = transform_item(self.transform, images, rng, m.box[occluded_row], self.image_size,
                                      donor=self.donor(int(m.pid[clean_row])))
        return {
            "images": tensors,
            "pid": int(m.pid[clean_row]),
            "label": int(m.label[clean_row]) if m.label is not None else -1,
            "camid": int(m.camid[clean_row]),
            "rows": (clean_row, occluded_row),
            "occ_type": int(m.occ_type[occluded_row]),
            "box": box,
        }


def occluded_rows_of_types(manifest: SplitManifest, occluder_types: Sequence[str], path: Path) -> np.ndarray:
    """Occluded rows whose occluder is one of ``occluder_types`` (all occluded rows when empty).

    Raises:
        BadInputError: a type that has no rows in the split.
    """
    if not occluder_types:
        return np.flatnonzero(manifest.occluded)
    present = manifest.occ_types_present()
    absent = [t for t in occluder_types if t not in present]
    if absent:
        raise BadInputError(f"{path}: the train split has no occluded copies of type {', '.join(absent)} "
                            f"(present: {', '.join(present) or 'none'}); use one of those or regenerate with --type")
    return np.concatenate([manifest.rows(f"occluded:{t}") for t in occluder_types])


def build_train_dataset(
    path: str | os.PathLike,
    train_on: TrainOn,
    transform_config: TransformConfig = TransformConfig(),
    seed: int = 0,
    occluder_types: Sequence[str] = (),
    occlusion_p: float = 0.5,
    occlusion_ramp_epochs: int = 0,
) -> HDF5Split | PairedTrainSet:
    """The training dataset for ``--train-on clean|occluded|both|augment`` with the training transform.

    ``occluder_types`` restricts the occluded images seen ("occluded", "both", "augment") to
    those types; ``occlusion_p`` and ``occlusion_ramp_epochs`` apply to "augment"
    (:class:`OcclusionAugmentSet`).
    """
    if train_on not in TRAIN_ON:
        raise BadInputError(f"--train-on {train_on!r}: use one of {', '.join(TRAIN_ON)}")
    transform = TrainTransform(transform_config)
    if train_on == "both":
        return PairedTrainSet(path, transform=transform, seed=seed, occluder_types=occluder_types)
    if train_on == "augment":
        return OcclusionAugmentSet(path, transform=transform, seed=seed, occluder_types=occluder_types,
                                   p=occlusion_p, ramp_epochs=occlusion_ramp_epochs)
    manifest = read_store(path).splits["train"]
    if train_on == "occluded":
        rows = np.sort(occluded_rows_of_types(manifest, occluder_types, Path(path)))
    else:
        rows = manifest.rows(train_on)
    if len(rows) == 0:
        raise BadInputError(f"{path}: the train split has no {train_on} rows; choose another --train-on")
    return HDF5Split(path, "train", rows=rows, transform=transform, seed=seed)
