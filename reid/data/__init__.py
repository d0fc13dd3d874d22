"""Data pipeline: HDF5 datasets (:mod:`~reid.data.datasets`), batches and collate
(:mod:`~reid.data.collate`), loader builders (:mod:`~reid.data.loaders`), the P x K sampler
(:mod:`~reid.data.sampler`) and transforms (:mod:`~reid.data.transforms`).

Typical training use::

    loader = build_train_loader(path, "both", batch_p=16, batch_k=4, workers=4, seed=0)
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            batch = batch.to(device)      # float32 normalised images [B, 3, H, W]
            ...
"""

from reid.data.collate import Batch, CollateItems, CollatePairs
from reid.data.datasets import TRAIN_ON, HDF5Split, PairedTrainSet, build_train_dataset
from reid.data.loaders import build_eval_loader, build_train_loader
from reid.data.sampler import KeyedBatchSampler, PKSampler, SampleKey
from reid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentParams,
    EvalTransform,
    TrainTransform,
    TransformConfig,
    item_rng,
    normalize_batch,
)

__all__ = [
    "TRAIN_ON",
    "Batch",
    "CollateItems",
    "CollatePairs",
    "HDF5Split",
    "PairedTrainSet",
    "build_eval_loader",
    "build_train_dataset",
    "build_train_loader",
    "KeyedBatchSampler",
    "PKSampler",
    "SampleKey",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentParams",
    "EvalTransform",
    "TrainTransform",
    "TransformConfig",
    "item_rng",
    "normalize_batch",
]
