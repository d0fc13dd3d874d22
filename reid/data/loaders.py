"""The DataLoader builders: the P x K training loader and the in-order evaluation loader.

Both yield :class:`~reid.data.collate.Batch`; ``batch = batch.to(device)`` gives float32
normalised images [B, 3, H, W]. Worker processes are capped at the usable CPUs and run cv2
single-threaded.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.utils.data

from common.workers import cap_workers
from reid.data.collate import CollateItems, CollatePairs
from reid.data.datasets import HDF5Split, TrainOn, build_train_dataset
from reid.data.sampler import KeyedBatchSampler, PKSampler
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TransformConfig


def _worker_init(_worker_id: int) -> None:
    # One thread per worker: the workers already use the cores; cv2's own pool would oversubscribe.
    cv2.setNumThreads(1)


def build_train_loader(
    path: str | os.PathLike,
    train_on: TrainOn,
    batch_p: int,
    batch_k: int,
    transform_config: TransformConfig = TransformConfig(),
    workers: int = 4,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    normalize_in_workers: bool = False,
    occluder_types: Sequence[str] = (),
    occlusion_p: float = 0.5,
    occlusion_ramp_epochs: int = 0,
) -> torch.utils.data.DataLoader:
    """P x K training loader yielding :class:`Batch`; use ``batch = batch.to(device)``.

    Batches hold P*K images ("clean", "occluded", "augment") or 2*P*K images ("both": P*K
    clean, then their P*K occluded copies). The loader's ``batch_sampler`` is a
    :class:`~reid.data.sampler.KeyedBatchSampler`: call ``loader.batch_sampler.set_epoch(e)``
    before iterating epoch ``e``. Results are identical for any ``workers`` value.
    Images arrive as uint8 and ``Batch.to`` normalises them on the device (4x less memory
    traffic between processes and to the GPU); ``normalize_in_workers=True`` yields float32
    normalised images from the workers instead.

    Raises:
        BadInputError: unknown ``train_on``, no rows for it, P too large (see PKSampler).
    """
    dataset = build_train_dataset(path, train_on, transform_config, seed, occluder_types=occluder_types,
                                  occlusion_p=occlusion_p, occlusion_ramp_epochs=occlusion_ramp_epochs)
    sampler = PKSampler(dataset.pids, batch_p, batch_k, seed=seed, rank=rank, world_size=world_size, source=str(path))
    workers = cap_workers(workers)  # more processes than usable CPUs only contend
    collate = (CollatePairs if train_on == "both" else CollateItems)(
        tuple(transform_config.mean), tuple(transform_config.std), normalize_in_workers
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=KeyedBatchSampler(sampler),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=_worker_init if workers > 0 else None,
    )


def build_eval_loader(
    path: str | os.PathLike,
    split: str,
    rows: np.ndarray | Sequence[int] | None = None,
    size: tuple[int, int] = (256, 128),
    batch_size: int = 128,
    workers: int = 0,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    normalize_in_workers: bool = False,
) -> torch.utils.data.DataLoader:
    """Loader over ``rows`` of ``split`` in the given order (default all), resize only.

    Yields :class:`Batch`; ``batch.to(device).images`` are float32 normalised [b, 3, H, W]
    (see :func:`build_train_loader` for ``normalize_in_workers``).
    """
    dataset = HDF5Split(path, split, rows=rows, transform=EvalTransform(size))
    workers = cap_workers(workers)  # more processes than usable CPUs only contend
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=CollateItems(tuple(mean), tuple(std), normalize_in_workers),
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_worker_init if workers > 0 else None,
    )
