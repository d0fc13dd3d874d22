"""P x K identity batch sampler, seeded, epoch-aware and sharded for DistributedDataParallel.

Epoch definition (what one ``for batch in loader`` covers):

    The identities are shuffled with a generator seeded by (seed, epoch) and cut into
    consecutive groups of P; each group is one batch, and the last incomplete group is dropped.
    So an epoch uses every identity at most once as a batch identity (all of them when P
    divides the number of identities N) and has ``floor(N / P)`` batches in one process.
    For each batch identity, K of its items are drawn: without replacement when it has at
    least K items; otherwise every item once plus ``K - n`` more drawn with replacement.
    Consequence: with ``m`` items per identity one epoch shows about ``min(K, m) / m`` of the
    images (torchreid's RandomIdentitySampler instead walks through every image once per
    epoch, giving about ``m / K`` times more batches); count epochs accordingly.

Sharding: with ``world_size`` W every rank builds the same single-process epoch (same seed)
and takes the global batches ``rank, rank + W, rank + 2W, ...`` among the first
``W * floor(B / W)`` (B = floor(N / P)); ranks are disjoint, equally long, and together they
cover the single-process epoch except its last ``B mod W`` batches.

Reproducible augmentation: :class:`KeyedBatchSampler` wraps a :class:`PKSampler` and yields
:class:`SampleKey` (dataset index, epoch, global slot) instead of bare indices, so that the
datasets of :mod:`reid.data.datasets` seed each item's augmentation from the key — the
epoch travels with the key into persistent worker processes.
"""

from __future__ import annotations

import logging
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch.utils.data

from common.errors import BadInputError

logger = logging.getLogger(__name__)

# Domain tag: keeps the sampler's random stream apart from the augmentation stream.
_SAMPLER_STREAM = 0x5A3


class SampleKey(NamedTuple):
    """What a keyed batch sampler hands to a dataset for one item.

    Attributes:
        index: dataset index.
        epoch: the epoch being drawn.
        slot: position of the item in the unsharded epoch (global batch * batch size + j).
    """

    index: int
    epoch: int
    slot: int


class PKSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler: each batch holds P identities x K dataset indices (identity-major order).

    Args:
        pids: identity of every dataset item, shape [n] (any integer ids).
        batch_p: identities per batch (P).
        batch_k: items per identity (K).
        seed: base seed; all DDP ranks must pass the same one.
        rank: this process's rank in [0, world_size).
        world_size: number of processes sharing the epoch.
        source: name used in error messages (the data file).
        split: name of the split in error messages.

    Raises:
        BadInputError: P or K < 1, P larger than the number of identities, or too few
            batches for ``world_size`` ranks.
    """

    def __init__(
        self,
        pids: Sequence[int] | np.ndarray,
        batch_p: int,
        batch_k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        source: str = "the data",
        split: str = "train",
    ) -> None:
        pids = np.asarray(pids)
        if batch_p < 1:
            raise BadInputError(f"--batch-p {batch_p}: must be at least 1")
        if batch_k < 1:
            raise BadInputError(f"--batch-k {batch_k}: must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        identities, inverse = np.unique(pids, return_inverse=True)
        num_ids = len(identities)
        if batch_p > num_ids:
            raise BadInputError(
                f"--batch-p {batch_p} is larger than the {num_ids} identities in the {split} split of {source}; lower --batch-p"
            )
        self.batch_p = int(batch_p)
        self.batch_k = int(batch_k)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0
        # items_of[i]: dataset indices of identity i, ascending.
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(num_ids + 1))
        self.items_of: list[np.ndarray] = [order[bounds[i] : bounds[i + 1]] for i in range(num_ids)]
        self.identities = identities
        self.batches_per_epoch = num_ids // self.batch_p
        if self.batches_per_epoch < self.world_size:
            raise BadInputError(
                f"--batch-p {batch_p} on {world_size} processes needs at least {batch_p * world_size} identities, "
                f"but the {split} split of {source} has {num_ids}; lower --batch-p or use fewer processes"
            )
        small = sum(len(items) < self.batch_k for items in self.items_of)
        if small:
            logger.info("%d of %d identities have fewer than K=%d items; they are sampled with replacement", small, num_ids, self.batch_k)

    @property
    def batch_size(self) -> int:
        """Dataset items per batch: P * K."""
        return self.batch_p * self.batch_k

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation the next iteration draws (call before iter)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches this rank yields per epoch: floor(floor(N / P) / world_size)."""
        return self.batches_per_epoch // self.world_size

    def epoch_batches(self) -> list[list[int]]:
        """All ``floor(N / P)`` batches of the current epoch as one process would draw them."""
        rng = np.random.default_rng([self.seed, self.epoch, _SAMPLER_STREAM])
        order = rng.permutation(len(self.items_of))
        batches = []
        for b in range(self.batches_per_epoch):
            batch: list[int] = []
            for identity in order[b * self.batch_p : (b + 1) * self.batch_p]:
                batch.extend(self._draw_items(self.items_of[identity], rng))
            batches.append(batch)
        return batches

    def _draw_items(self, items: np.ndarray, rng: np.random.Generator) -> list[int]:
        k = self.batch_k
        if len(items) >= k:
            chosen = rng.choice(items, size=k, replace=False)
        else:
            # Every item once, then fill up with replacement: a small identity shows all it has.
            extra = rng.choice(items, size=k - len(items), replace=True)
            chosen = rng.permutation(np.concatenate([items, extra]))
        return [int(i) for i in chosen]

    def shard_batch_ids(self) -> range:
        """Global batch numbers (into :meth:`epoch_batches`) that this rank yields."""
        usable = len(self) * self.world_size
        return range(self.rank, usable, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches()
        for g in self.shard_batch_ids():
            yield batches[g]

    def keyed_batches(self) -> Iterator[list[SampleKey]]:
        """Like ``iter(self)`` but each index comes with its epoch and global slot."""
        batches = self.epoch_batches()
        size = self.batch_size
        for g in self.shard_batch_ids():
            yield [SampleKey(index, self.epoch, g * size + j) for j, index in enumerate(batches[g])]


class KeyedBatchSampler(torch.utils.data.Sampler[list[SampleKey]]):
    """Wraps a :class:`PKSampler` for a DataLoader: yields lists of :class:`SampleKey`.

    Call :meth:`set_epoch` before each epoch's ``iter(loader)`` (it forwards to the PK sampler).
    """

    def __init__(self, sampler: PKSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        return self.sampler.keyed_batches()
