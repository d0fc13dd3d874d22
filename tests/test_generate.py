"""generate(): schema and manifests of the written file, pixels, determinism, skip-bad, interruption."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

import occsim.generate as gen
from common.errors import BadInputError
from common.decoding import decode_image
from occsim.generate import GenerateConfig, generate, resolve_source
from occsim.occluders import OCCLUDERS, OccluderParams
from occsim.schema import SPLITS, OccType
from occsim.spool import SPOOL_PREFIX, Slot, wait_for_slot
from occsim.store import StoreWriter, open_h5, read_images, read_store
from tests.conftest import MARKET_FILES, make_market_tree, write_jpeg

SIZE = (32, 16)  # stored size used by most tests: small and fast


def _config(src: Path, out: Path, **kwargs) -> GenerateConfig:
    base = dict(src=src, out=out, workers=1, image_size=SIZE, occluder=OccluderParams(patch=10),
                chunk_size=3, progress=False)
    base.update(kwargs)
    return GenerateConfig(**base)


@pytest.fixture()
def market(tmp_path: Path) -> Path:
    return make_market_tree(tmp_path / "Market")


def test_manifests_and_row_layout(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    report = generate(_config(market, out, types=("black", "mean")))  # stored in code order: mean, black
    info = read_store(out)
    assert report.fingerprint == info.fingerprint
    n_clean = {"train": 4, "query": 2, "gallery": 5}
    for split in SPLITS:
        m = info.splits[split]
        n = n_clean[split]
        copies = 1 if split == "gallery" else 3
        assert len(m) == n * copies
        # Clean rows first, in source (path) order; then one block per type, mean before black.
        assert m.occluded.tolist() == [False] * n + [True] * (n * (copies - 1))
        expected_types = [0] * n + ([OccType.MEAN] * n + [OccType.BLACK] * n if copies == 3 else [])
        assert m.occ_type.tolist() == expected_types
        assert m.clean_index.tolist() == list(range(n)) * copies
        assert m.path[:n] == sorted(m.path[:n])
        for row in range(len(m)):  # every occluded row points at the clean row of the same image
            clean = m.clean_index[row]
            assert (m.path[row], m.pid[row], m.camid[row]) == (m.path[clean], m.pid[clean], m.camid[clean])
        assert np.all(m.box[:n] == -1)
        boxes = m.box[n:]
        assert np.all(boxes[:, 2:] == 10)  # patch 10 on a 32x16 image
        assert np.all((boxes[:, 0] >= 0) & (boxes[:, 0] + boxes[:, 2] <= SIZE[1]))
        assert np.all((boxes[:, 1] >= 0) & (boxes[:, 1] + boxes[:, 3] <= SIZE[0]))
    train = info.splits["train"]
    assert train.pid[:4].tolist() == [2, 2, 7, 10]
    assert train.label.tolist() == [0, 0, 1, 2] * 3
    assert info.splits["query"].label is None
    assert info.splits["gallery"].pid.tolist() == [-1, 0, 1, 3, 3]
    assert report.rows["train"] == {"clean": 4, "mean": 4, "black": 4}
    assert report.rows["gallery"] == {"clean": 5}


def test_occluded_rows_equal_the_occluder_on_the_clean_row(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    params = OccluderParams(patch=12, area_min=0.2, area_max=0.3)
    generate(_config(market, out, types=("mean", "black", "random"), occluder=params, seed=7, occlude_gallery=True))
    info = read_store(out)
    with open_h5(out) as h5:
        for split_index, split in enumerate(SPLITS):
            m = info.splits[split]
            images = read_images(h5, split, range(len(m)))
            assert images.shape == (len(m), *SIZE, 3)
            for row in np.flatnonzero(m.occluded):
                clean_row = int(m.clean_index[row])
                name = ("none", "mean", "black", "random")[m.occ_type[row]]
                rng = np.random.default_rng([7, split_index, clean_row, int(m.occ_type[row])])
                expected, box = OCCLUDERS[name](images[clean_row], rng, params)
                assert tuple(m.box[row]) == box
                assert np.array_equal(images[row], expected)
                x, y, w, h = box
                if name != "black":  # mean fill = the clean image's per-channel mean
                    mean = images[clean_row].reshape(-1, 3).mean(axis=0)
                    assert np.all(np.abs(images[row][y, x].astype(float) - mean) <= 1)


def test_pixels_are_decoded_rgb_and_resized(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    generate(_config(market, out, image_size=(64, 32)))  # source files are 32x16: grown, INTER_LINEAR
    info = read_store(out)
    m = info.splits["query"]
    bgr = cv2.imread(str(market / m.path[0]), cv2.IMREAD_COLOR)
    expected = cv2.resize(bgr, (32, 64), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    with open_h5(out) as h5:
        assert np.array_equal(read_images(h5, "query", [0])[0], expected)

    out2 = tmp_path / "small.h5"
    generate(_config(market, out2, image_size=(16, 8)))  # shrunk: INTER_AREA
    expected = cv2.resize(bgr, (8, 16), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    with open_h5(out2) as h5:
        assert np.array_equal(read_images(h5, "query", [0])[0], expected)


def test_gallery_is_occluded_only_when_asked(market: Path, tmp_path: Path) -> None:
    generate(_config(market, tmp_path / "a.h5", occlude=("train",)))
    info = read_store(tmp_path / "a.h5")
    assert [int(info.splits[s].occluded.sum()) for s in SPLITS] == [4, 0, 0]
    generate(_config(market, tmp_path / "b.h5", occlude_gallery=True))
    info = read_store(tmp_path / "b.h5")
    assert [int(info.splits[s].occluded.sum()) for s in SPLITS] == [4, 2, 5]
    assert info.generator_args["occlude"] == ["train", "query", "gallery"]


def test_workers_do_not_change_the_bytes(market: Path, tmp_path: Path) -> None:
    for i in range(12):  # more images so that several chunks go to both workers
        write_jpeg(market / "bounding_box_train" / f"0{20 + i}_c{1 + i % 6}s1_000{100 + i}_01.jpg", seed=50 + i)
    one, two = tmp_path / "w1.h5", tmp_path / "w2.h5"
    generate(_config(market, one, types=("mean", "random"), workers=1, chunk_size=2))
    generate(_config(market, two, types=("mean", "random"), workers=2, chunk_size=2))
    assert one.read_bytes() == two.read_bytes()
    # Another chunk size changes where HDF5 puts the chunks, not the content or the fingerprint.
    three = generate(_config(market, tmp_path / "w3.h5", types=("mean", "random"), workers=2, chunk_size=5))
    assert three.fingerprint == read_store(one).fingerprint
    with open_h5(one) as a, open_h5(three.out) as b:
        for split in SPLITS:
            assert np.array_equal(a[split]["images"][()], b[split]["images"][()])


def test_recorded_arguments_are_machine_independent(market: Path, tmp_path: Path) -> None:
    config = _config(market, tmp_path / "a.h5", force=True, workers=2)
    report = generate(config)
    args = read_store(report.out).generator_args
    assert "workers" not in args and "force" not in args and "chunk_size" not in args
    assert args["source_folder"] == "Market"
    assert str(tmp_path) not in json.dumps(args)
    # The same source under another folder, written elsewhere: the same fingerprint.
    moved = tmp_path / "elsewhere" / "Market"
    shutil.copytree(market, moved)
    other = generate(_config(moved, tmp_path / "b" / "b.h5", workers=1, chunk_size=5))
    assert other.fingerprint == report.fingerprint
    changed = generate(_config(market, tmp_path / "c.h5", seed=1))
    assert changed.fingerprint != report.fingerprint


def test_existing_output_needs_force(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    with pytest.raises(BadInputError, match="already exists; pass --force"):
        generate(_config(market, out))
    assert out.read_bytes() == b"precious"
    generate(_config(market, out, force=True))
    assert read_store(out).splits["train"].pid.size == 8


def test_bad_jpeg_stops_and_names_the_file(market: Path, tmp_path: Path) -> None:
    bad = market / "query" / "0003_c2s1_000201_00.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    out = tmp_path / "o.h5"
    with pytest.raises(BadInputError, match=r"query/0003_c2s1_000201_00\.jpg: truncated JPEG.*--skip-bad"):
        generate(_config(market, out, workers=2))
    assert list(tmp_path.glob("*.h5")) == [] and list(tmp_path.glob(".o.h5*")) == []


def test_skip_bad_skips_and_reports(market: Path, tmp_path: Path) -> None:
    truncated = market / "bounding_box_train" / "0007_c3s3_077419_03.jpg"
    truncated.write_bytes(truncated.read_bytes()[:100])
    (market / "bounding_box_test" / "0003_c1s1_000777_01.jpg").write_bytes(b"")
    report = generate(_config(market, tmp_path / "o.h5", skip_bad=True, workers=2))
    assert [(s.path, s.reason) for s in report.skipped] == [
        ("bounding_box_train/0007_c3s3_077419_03.jpg", "truncated JPEG (no end-of-image marker)"),
        ("bounding_box_test/0003_c1s1_000777_01.jpg", "zero-byte file"),
    ]
    info = read_store(tmp_path / "o.h5")
    assert info.splits["train"].pid[:3].tolist() == [2, 2, 10]
    assert info.splits["train"].label[:3].tolist() == [0, 0, 1]  # still contiguous
    assert len(info.splits["gallery"]) == 4
    assert info.generator_args["skipped"] == sorted(s.path for s in report.skipped)
    assert "skipped 2 unreadable images" in report.summary_text()


def test_decode_converts_grayscale_and_rgba(tmp_path: Path) -> None:
    gray = tmp_path / "g.jpg"
    assert cv2.imwrite(str(gray), np.full((20, 10), 77, dtype=np.uint8))
    image, reason = decode_image(str(gray), (20, 10))
    assert reason == "" and image.shape == (20, 10, 3) and np.all(np.abs(image.astype(int) - 77) <= 1)
    rgba = np.zeros((20, 10, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 2], rgba[..., 3] = 200, 10, 128  # BGRA: blue 200, red 10, half transparent
    ok, png = cv2.imencode(".png", rgba)
    (tmp_path / "a.jpg").write_bytes(png.tobytes())  # an RGBA image with a .jpg name
    image, reason = decode_image(str(tmp_path / "a.jpg"), (20, 10))
    assert reason == "" and image.shape == (20, 10, 3)
    assert image[0, 0].tolist() == [10, 0, 200]  # RGB order, alpha dropped
    (tmp_path / "z.jpg").write_bytes(b"not an image at all")
    assert decode_image(str(tmp_path / "z.jpg"), (20, 10)) == (None, "not a decodable image")


def test_interrupted_write_leaves_nothing(market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = StoreWriter.write_images

    def failing(self, split, start, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, mid-way
        return original(self, split, start, images)

    monkeypatch.setattr(StoreWriter, "write_images", failing)
    out = tmp_path / "out" / "o.h5"
    with pytest.raises(KeyboardInterrupt):
        generate(_config(market, out, workers=2, chunk_size=2))
    assert calls["n"] == 3
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor a partial one


def test_default_source_prefers_market_then_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = []

    def fake_synth(out_dir, config, workers=1, force=False):
        made.append((Path(out_dir), config.n_ids))
        make_market_tree(Path(out_dir))

    monkeypatch.setattr("occsim.synth.synthesize_market", fake_synth)
    lines: list[str] = []
    assert resolve_source(None, echo=lines.append) == gen.DEFAULT_SYNTHETIC
    assert made == [(gen.DEFAULT_SYNTHETIC, 300)] and "making the built-in synthetic set" in lines[-1]
    assert resolve_source(None, echo=lines.append) == gen.DEFAULT_SYNTHETIC  # reused, not remade
    assert len(made) == 1 and "reusing" in lines[-1]
    make_market_tree(tmp_path / gen.DEFAULT_MARKET)
    assert resolve_source(None, echo=lines.append) == gen.DEFAULT_MARKET
    assert resolve_source(tmp_path / "x") == tmp_path / "x"
    report = generate(GenerateConfig(workers=1, image_size=SIZE, occluder=OccluderParams(patch=10), progress=False))
    assert report.out == Path("data/occluded.h5") and (tmp_path / "data" / "occluded.h5").exists()
    assert read_store(report.out).source == "Market-1501-v15.09.15"


def test_invalid_options(market: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="--type 'blur'"):
        generate(_config(market, tmp_path / "o.h5", types=("blur",)))
    with pytest.raises(BadInputError, match="--occlude 'test'"):
        generate(_config(market, tmp_path / "o.h5", occlude=("test",)))
    with pytest.raises(BadInputError, match="--patch"):
        generate(_config(market, tmp_path / "o.h5", occluder=OccluderParams(patch=0)))
    assert not (tmp_path / "o.h5").exists()


def test_clean_only_file(market: Path, tmp_path: Path) -> None:
    generate(_config(market, tmp_path / "o.h5", occlude=()))
    info = read_store(tmp_path / "o.h5")
    assert all(not info.splits[s].occluded.any() for s in SPLITS)
    with h5py.File(tmp_path / "o.h5") as h5:
        assert h5["train/images"].shape == (4, *SIZE, 3)


def test_sigterm_mid_run_leaves_nothing(market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original, calls = StoreWriter.write_images, {"n": 0}

    def kill_self(self, split, start, images):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would
            time.sleep(0.05)  # the handler runs here
        return original(self, split, start, images)

    monkeypatch.setattr(StoreWriter, "write_images", kill_self)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out" / "o.h5"
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        generate(_config(market, out, workers=2, chunk_size=2))
    assert list((tmp_path / "out").iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_swallowed_interrupt_still_stops(market: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops exceptions raised inside weakref callbacks; the run must stop anyway."""
    original, calls = StoreWriter.write_images, {"n": 0}

    def swallow(self, split, start, images):
        calls["n"] += 1
        if calls["n"] == 1:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass  # lost, as in a callback
        return original(self, split, start, images)

    monkeypatch.setattr(StoreWriter, "write_images", swallow)
    with pytest.raises(KeyboardInterrupt, match="^signal 15$"):  # raised again by the main loop's check
        generate(_config(market, tmp_path / "o.h5", workers=1))
    assert list(tmp_path.glob("*.h5")) == [] and list(tmp_path.glob(".o.h5*")) == []


def test_spool_is_removed_and_stale_ones_swept(market: Path, tmp_path: Path) -> None:
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    stale = base / f"{SPOOL_PREFIX}999999999-test"  # no such process
    stale.mkdir(exist_ok=True)
    (stale / "slot0.raw").write_bytes(b"x")
    mine = set(base.glob(f"{SPOOL_PREFIX}{os.getpid()}-*"))
    generate(_config(market, tmp_path / "o.h5", workers=2, chunk_size=2))
    assert not stale.exists()
    assert set(base.glob(f"{SPOOL_PREFIX}{os.getpid()}-*")) == mine


def test_full_spool_falls_back_to_the_pipe(market: Path, tmp_path: Path) -> None:
    """A slot that cannot be written (ENOSPC: /dev/full) sends the pixels back inline instead."""
    counter = tmp_path / "consumed"
    counter.write_bytes((0).to_bytes(8, "little"))
    paths = [f"query/{n}" for f, n in MARKET_FILES if f == "query"]
    boxes = np.array([[[1, 2, 10, 10], [3, 4, 10, 10]]], dtype=np.int16)
    inline = gen._process_chunk(str(market), paths, SIZE, ("mean",), boxes, False)
    slot = Slot("/dev/full", str(counter), 0, os.getppid())
    fallback = gen._process_chunk(str(market), paths, SIZE, ("mean",), boxes, False, slot)
    assert not fallback.spooled and np.array_equal(fallback.block, inline.block)
    assert inline.block.shape == (2, 2, *SIZE, 3)
    # The occluded slab is the clean one with the box filled.
    assert np.array_equal(inline.block[1, 0, :2], inline.block[0, 0, :2])
    assert len(set(map(tuple, inline.block[1, 0, 2:12, 1:11].reshape(-1, 3).tolist()))) == 1


def test_orphaned_worker_stops_waiting(tmp_path: Path) -> None:
    counter = tmp_path / "consumed"
    counter.write_bytes((0).to_bytes(8, "little"))
    not_my_parent = os.getpid()  # a worker's parent is the writer; here it is not
    with pytest.raises(RuntimeError, match="writer process is gone"):
        wait_for_slot(Slot(str(tmp_path / "slot0.raw"), str(counter), 1, not_my_parent))
    wait_for_slot(Slot(str(tmp_path / "slot0.raw"), str(counter), 0, not_my_parent))  # free: no wait
