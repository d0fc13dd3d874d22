"""Data pipeline: PK sampler, transforms, HDF5 datasets and loaders (tiny synthetic files)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import BadInputError
from occsim.store import StoreWriter, open_h5, read_images, read_store
from reid.data import (
    AugmentParams,
    EvalTransform,
    HDF5Split,
    KeyedBatchSampler,
    PairedTrainSet,
    PKSampler,
    SampleKey,
    TrainTransform,
    TransformConfig,
    build_eval_loader,
    build_train_loader,
    item_rng,
    normalize_batch,
)
from tests.conftest import TINY_TRAIN_PIDS, write_tiny_store

SMALL = TransformConfig(size=(64, 32), pad=4)


def _pids(counts: dict[int, int]) -> np.ndarray:
    """Dataset-order pids: identity p repeated counts[p] times, identities interleaved."""
    out = []
    for p, n in counts.items():
        out.extend([p] * n)
    return np.random.default_rng(5).permutation(np.asarray(out))


# ---------------------------------------------------------------- sampler


def test_pk_batches_hold_p_identities_k_items_each():
    counts = {10: 6, 11: 2, 12: 4, 13: 9, 14: 1, 15: 5, 16: 3, 17: 4, 18: 7, 19: 4}
    pids = _pids(counts)
    sampler = PKSampler(pids, batch_p=3, batch_k=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 10 // 3
    for batch in batches:
        assert len(batch) == 12
        per_id = Counter(int(pids[i]) for i in batch)
        assert len(per_id) == 3 and set(per_id.values()) == {4}
        # identity-major order: items of one identity are consecutive
        assert [int(pids[i]) for i in batch[::4]] == list(dict.fromkeys(int(pids[i]) for i in batch))


def test_small_identities_are_sampled_with_replacement_and_show_all_items():
    counts = {1: 2, 2: 1, 3: 8, 4: 5}
    pids = _pids(counts)
    for epoch in range(6):
        sampler = PKSampler(pids, batch_p=4, batch_k=4, seed=3)
        sampler.set_epoch(epoch)
        (batch,) = list(sampler)
        for p, n in counts.items():
            mine = [i for i in batch if pids[i] == p]
            assert len(mine) == 4
            if n < 4:  # every item present, repeats fill the rest
                assert set(mine) == set(np.flatnonzero(pids == p).tolist())
            else:  # without replacement
                assert len(set(mine)) == 4


def test_epoch_uses_each_identity_at_most_once_and_all_when_p_divides():
    pids = _pids({p: 4 for p in range(10)})
    partial = list(PKSampler(pids, batch_p=3, batch_k=2))
    seen = [int(pids[i]) for b in partial for i in b[::2]]
    assert len(partial) == 3 and len(seen) == len(set(seen)) == 9
    full = list(PKSampler(pids, batch_p=5, batch_k=2))
    assert sorted(int(pids[i]) for b in full for i in b[::2]) == list(range(10))


def test_sampler_is_deterministic_and_epoch_changes_it():
    pids = _pids({p: 5 for p in range(12)})
    a, b = PKSampler(pids, 3, 4, seed=7), PKSampler(pids, 3, 4, seed=7)
    first = list(a)
    assert first == list(b)
    a.set_epoch(1)
    second = list(a)
    assert second != first
    b.set_epoch(1)
    assert list(b) == second
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKSampler(pids, 3, 4, seed=8)) != first


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_are_disjoint_equal_and_cover_the_single_process_epoch(world_size):
    pids = _pids({p: 4 for p in range(12)})  # P=2 -> 6 batches, divisible by 2 and 3
    single = PKSampler(pids, 2, 3, seed=1)
    single.set_epoch(4)
    whole = list(single)
    shards = []
    for rank in range(world_size):
        s = PKSampler(pids, 2, 3, seed=1, rank=rank, world_size=world_size)
        s.set_epoch(4)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == 6 // world_size
    merged = [tuple(b) for shard in shards for b in shard]
    assert len(set(merged)) == len(merged)  # disjoint
    assert sorted(merged) == sorted(tuple(b) for b in whole)


def test_shards_drop_the_tail_when_world_size_does_not_divide():
    pids = _pids({p: 4 for p in range(10)})  # P=2 -> 5 batches; 2 ranks get 2 each
    whole = list(PKSampler(pids, 2, 2, seed=2))
    shards = [list(PKSampler(pids, 2, 2, seed=2, rank=r, world_size=2)) for r in range(2)]
    assert [len(s) for s in shards] == [2, 2]
    assert shards[0] == [whole[0], whole[2]] and shards[1] == [whole[1], whole[3]]


def test_keyed_batches_carry_epoch_and_global_slot():
    pids = _pids({p: 4 for p in range(8)})
    single = KeyedBatchSampler(PKSampler(pids, 2, 2, seed=0))
    single.set_epoch(3)
    keys = [k for b in single for k in b]
    assert [k.slot for k in keys] == list(range(16)) and {k.epoch for k in keys} == {3}
    rank1 = KeyedBatchSampler(PKSampler(pids, 2, 2, seed=0, rank=1, world_size=2))
    rank1.set_epoch(3)
    assert [k for b in rank1 for k in b] == keys[4:8] + keys[12:16]


def test_p_larger_than_identities_is_bad_input(tiny_store):
    with pytest.raises(BadInputError, match=r"--batch-p 7 is larger than the 6 identities in the train split of .*tiny\.h5; lower --batch-p"):
        build_train_loader(tiny_store, "clean", batch_p=7, batch_k=2, workers=0)
    with pytest.raises(BadInputError, match="--batch-p 4 on 2 processes"):
        PKSampler(np.arange(6), 4, 2, rank=0, world_size=2)
    with pytest.raises(BadInputError, match="--batch-k 0"):
        PKSampler(np.arange(6), 2, 0)


# ---------------------------------------------------------------- transforms


def test_normalize_batch_matches_hand_values():
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3).expand(1, 3, 2, 3).contiguous()
    out = normalize_batch(images, mean=(0.5, 0.4, 0.2), std=(0.5, 0.2, 0.25))
    assert out.dtype == torch.float32
    expected = {0: [-1.0, 1.0, -0.6], 1: [-2.0, 3.0, -1.0], 2: [-0.8, 3.2, 0.0]}
    for c, row in expected.items():
        torch.testing.assert_close(out[0, c, 0], torch.tensor(row), atol=1e-5, rtol=0)
    with pytest.raises(TypeError, match="uint8"):
        normalize_batch(out)


@pytest.mark.parametrize("flip,crop_y,crop_x", [(False, 0, 0), (True, 3, 1), (False, 6, 6), (True, 2, 5)])
def test_flip_pad_crop_matches_torch_reference(flip, crop_y, crop_x):
    image = np.random.default_rng(0).integers(0, 256, size=(20, 12, 3), dtype=np.uint8)
    transform = TrainTransform(TransformConfig(size=(20, 12), pad=3))
    out = transform.apply(image, AugmentParams(flip=flip, crop_y=crop_y, crop_x=crop_x))
    ref = torch.from_numpy(image).permute(2, 0, 1)
    if flip:
        ref = torch.flip(ref, dims=[2])
    ref = torch.nn.functional.pad(ref, (3, 3, 3, 3))[:, crop_y : crop_y + 20, crop_x : crop_x + 12]
    assert out.dtype == torch.uint8 and torch.equal(out, ref)


def test_random_erasing_box_and_fill():
    config = TransformConfig(size=(64, 32), pad=0, flip=False, random_erasing=True, erasing_p=1.0)
    transform = TrainTransform(config)
    image = np.full((32, 16, 3), 7, dtype=np.uint8)
    for seed in range(20):
        params = transform.draw(item_rng(seed, 0, 0))
        x, y, w, h = params.erase
        # the drawn sides are real numbers rounded to integers: allow half a pixel each way
        assert (h - 0.5) / (w + 0.5) <= 1 / 0.3 and (h + 0.5) / (w - 0.5) >= 0.3
        assert (h - 0.5) * (w - 0.5) <= 0.4 * 64 * 32 and (h + 0.5) * (w + 0.5) >= 0.02 * 64 * 32
        out = transform.apply(image, params).numpy()
        mask = np.zeros((64, 32), dtype=bool)
        mask[y : y + h, x : x + w] = True
        assert (out[:, mask] == np.array([124, 116, 104])[:, None]).all()
        assert (out[:, ~mask] == 7).all()


def test_pair_gets_identical_augmentation_and_differs_only_inside_the_box(tiny_store):
    config = TransformConfig(size=(64, 32), pad=4, random_erasing=True)
    transform = TrainTransform(config)
    manifest = read_store(tiny_store).splits["train"]
    with open_h5(tiny_store) as h5:
        occluded_rows = np.flatnonzero(manifest.occluded)[:6]
        clean_rows = manifest.clean_index[occluded_rows]
        clean_images = read_images(h5, "train", clean_rows)
        occluded_images = read_images(h5, "train", occluded_rows)
    flips = set()
    for i, (clean, occluded) in enumerate(zip(clean_images, occluded_images)):
        for seed in range(4):
            a, b = transform([clean, occluded], item_rng(seed, 0, i))
            same_a, same_b = transform([clean, clean.copy()], item_rng(seed, 0, i))
            assert torch.equal(same_a, same_b) and torch.equal(same_a, a)
            params = transform.draw(item_rng(seed, 0, i))
            flips.add(params.flip)
            bx, by, bw, bh = transform.transform_box(manifest.box[occluded_rows[i]], params, (32, 16))
            inside = np.zeros((64, 32), dtype=bool)  # 1 px margin: bilinear upsampling bleeds
            inside[max(0, int(np.floor(by)) - 1) : int(np.ceil(by + bh)) + 1, max(0, int(np.floor(bx)) - 1) : int(np.ceil(bx + bw)) + 1] = True
            differs = (a != b).any(dim=0).numpy()
            assert differs.any()  # the 10x8 patch never leaves a 64x32 frame with pad 4
            assert not differs[~inside].any()
    assert flips == {True, False}


# ---------------------------------------------------------------- datasets and loaders


def _store_with_invisible_occluders(src: Path, dst: Path) -> Path:
    """Copy of ``src`` whose occluded train rows hold exactly their clean originals' pixels."""
    info = read_store(src)
    with open_h5(src) as h5, StoreWriter(dst, image_size=info.image_size) as writer:
        for split, manifest in info.splits.items():
            images = read_images(h5, split, range(len(manifest)))
            if split == "train":
                images = images[manifest.clean_index]
            writer.add_split(split, manifest)
            writer.write_images(split, 0, images)
        writer.finish(source="copy", seed=0, generator_args={})
    return dst


def test_joint_batch_halves_identical_when_the_occluder_changes_nothing(tiny_store, tmp_path):
    path = _store_with_invisible_occluders(tiny_store, tmp_path / "same.h5")
    config = TransformConfig(size=(64, 32), pad=4, random_erasing=True, erasing_p=0.5)
    loader = build_train_loader(path, "both", batch_p=3, batch_k=2, transform_config=config, workers=0, seed=4)
    for epoch in range(3):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            half = len(batch) // 2
            assert batch.images.dtype == torch.uint8
            assert torch.equal(batch.images[:half], batch.images[half:])  # same augmentation
            normalised = batch.to("cpu").images
            assert normalised.dtype == torch.float32
            assert torch.equal(normalised[:half], normalised[half:])  # same normalisation
    in_workers = build_train_loader(path, "both", 3, 2, config, workers=0, seed=4, normalize_in_workers=True)
    for batch in in_workers:
        half = len(batch) // 2
        assert batch.images.dtype == torch.float32
        assert torch.equal(batch.images[:half], batch.images[half:])


def test_train_on_modes_select_clean_occluded_or_pairs(tiny_store):
    manifest = read_store(tiny_store).splits["train"]
    for mode, want in (("clean", False), ("occluded", True)):
        loader = build_train_loader(tiny_store, mode, 3, 4, SMALL, workers=0)
        for epoch in range(3):
            loader.batch_sampler.set_epoch(epoch)
            for batch in loader:
                assert len(batch) == 12
                assert (batch.occluded == want).all()
                assert (manifest.occluded[batch.rows.numpy()] == want).all()
                assert torch.equal(batch.labels, torch.as_tensor(manifest.label[batch.rows.numpy()], dtype=torch.int64))
    batch = next(iter(build_train_loader(tiny_store, "both", 3, 4, SMALL, workers=0)))
    rows = batch.rows.numpy()
    assert len(batch) == 24 and batch.images.shape == (24, 3, 64, 32)
    assert not manifest.occluded[rows[:12]].any() and manifest.occluded[rows[12:]].all()
    assert (manifest.clean_index[rows[12:]] == rows[:12]).all()
    assert batch.occluded.tolist() == [False] * 12 + [True] * 12
    assert torch.equal(batch.pids[:12], batch.pids[12:]) and len(set(batch.pids.tolist())) == 3


def test_bad_train_on_and_missing_occlusion(tiny_store, tmp_path):
    with pytest.raises(BadInputError, match="--train-on 'all'"):
        build_train_loader(tiny_store, "all", 2, 2, workers=0)
    clean_only = write_tiny_store(tmp_path / "clean.h5", occ_types=())
    for mode in ("occluded", "both"):
        with pytest.raises(BadInputError, match="clean.h5: the train split has no"):
            build_train_loader(clean_only, mode, 2, 2, workers=0)


def test_several_copies_are_picked_at_random_reproducibly(tmp_path):
    path = write_tiny_store(tmp_path / "two.h5", occ_types=("mean", "black"))
    dataset = PairedTrainSet(path, transform=TrainTransform(SMALL), seed=0)
    assert len(dataset) == 24 and all(len(c) == 2 for c in dataset.copies)
    picked = [dataset[SampleKey(0, epoch, 0)]["occ_type"] for epoch in range(16)]
    assert set(picked) == {1, 2}
    again = dataset[SampleKey(0, 5, 0)]
    assert again["occ_type"] == picked[5]
    first = dataset[SampleKey(0, 5, 0)]
    assert all(torch.equal(x, y) for x, y in zip(first["images"], again["images"]))


def test_device_normalisation_equals_worker_normalisation(tiny_store):
    in_workers = build_train_loader(tiny_store, "both", 3, 2, SMALL, workers=0, seed=2, normalize_in_workers=True)
    deferred = build_train_loader(tiny_store, "both", 3, 2, SMALL, workers=0, seed=2)
    for a, b in zip(in_workers, deferred):
        assert a.images.dtype == torch.float32 and b.images.dtype == torch.uint8
        assert torch.equal(a.images, b.to("cpu").images)
        assert torch.equal(a.to("cpu").images, a.images)  # already normalised: moved, not normalised twice


def test_augmentation_is_reproducible_and_changes_with_the_epoch(tiny_store):
    def epoch_images(epoch):
        loader = build_train_loader(tiny_store, "both", 2, 2, SMALL, workers=0, seed=9)
        loader.batch_sampler.set_epoch(epoch)
        return [(b.rows, b.images) for b in loader]

    first, again, other = epoch_images(0), epoch_images(0), epoch_images(1)
    assert all(torch.equal(r1, r2) and torch.equal(i1, i2) for (r1, i1), (r2, i2) in zip(first, again))
    assert not all(torch.equal(i1, i2) for (_, i1), (_, i2) in zip(first, other))


def test_workers_and_shards_give_the_single_process_batches(tiny_store):
    reference = build_train_loader(tiny_store, "both", 2, 2, SMALL, workers=0, seed=5)
    with_workers = build_train_loader(tiny_store, "both", 2, 2, SMALL, workers=2, seed=5)
    reference.dataset[0]  # open the file in the parent: forked workers must reopen their own
    assert reference.dataset._images.is_open
    for epoch in (0, 1):
        for loader in (reference, with_workers):
            loader.batch_sampler.set_epoch(epoch)
        got = list(with_workers)
        want = list(reference)
        assert len(got) == len(want) == 3
        for a, b in zip(got, want):
            assert torch.equal(a.rows, b.rows) and torch.equal(a.images, b.images)
        shards = [build_train_loader(tiny_store, "both", 2, 2, SMALL, workers=0, seed=5, rank=r, world_size=3) for r in range(3)]
        for rank, shard in enumerate(shards):
            shard.batch_sampler.set_epoch(epoch)
            (batch,) = list(shard)
            assert torch.equal(batch.images, want[rank].images)
    assert not with_workers.dataset._images.is_open  # the main process never opened it


def test_dataset_pickles_without_its_handle_and_reads_the_stored_pixels(tiny_store):
    dataset = HDF5Split(tiny_store, "query", rows=[3, 9])
    item = dataset[1]
    with open_h5(tiny_store) as h5:
        stored = read_images(h5, "query", [9])[0]
    assert torch.equal(item["image"], torch.from_numpy(stored).permute(2, 0, 1))
    assert (item["pid"], item["occluded"], item["clean_index"], item["row"], item["label"]) == (101, True, 1, 9, -1)
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._images._file is None and not clone._images.is_open
    assert torch.equal(clone[1]["image"], item["image"])
    dataset.close()
    assert not dataset._images.is_open
    assert torch.equal(dataset[1]["image"], item["image"]) and dataset._images.is_open


def _report_handle_owner(dataset: HDF5Split, queue) -> None:
    dataset[0]
    queue.put(dataset._images._pid == os.getpid())


def test_forked_process_opens_its_own_handle(tiny_store):
    dataset = HDF5Split(tiny_store, "gallery")
    dataset[0]
    parent_file = dataset._images._file
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_report_handle_owner, args=(dataset, queue))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=60)
    assert dataset._images._file is parent_file and parent_file.id.valid


def test_eval_loader_keeps_row_order(tiny_store):
    rows = np.array([9, 0, 8, 3, 1])
    batches = list(build_eval_loader(tiny_store, "gallery", rows, size=(64, 32), batch_size=2, workers=0))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert torch.cat([b.rows for b in batches]).tolist() == rows.tolist()
    assert torch.cat([b.pids for b in batches]).tolist() == [0, 101, -1, 102, 101]
    batch = batches[0].to("cpu")
    assert batch.images.shape == (2, 3, 64, 32) and batch.images.dtype == torch.float32
    resized = EvalTransform((64, 32))([np.full((32, 16, 3), 200, dtype=np.uint8)])[0]
    assert (resized == 200).all() and resized.shape == (3, 64, 32)


def test_train_labels_follow_the_manifest(tiny_store):
    dataset = HDF5Split(tiny_store, "train")
    assert sorted(set(dataset.pids.tolist())) == sorted(TINY_TRAIN_PIDS)
    item = dataset[24 + 5]  # occluded copy of row 5 (second identity)
    assert (item["pid"], item["label"], item["occluded"], item["clean_index"]) == (8, 1, True, 5)
