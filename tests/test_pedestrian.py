"""The pedestrian occluder: geometry, source choice, pasted pixels, manifest, workers, CLI, old files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from cli.occsim_cli import main
from common.errors import BadInputError
from occsim.generate import GenerateConfig, generate
from occsim.occluders import OccluderParams
from occsim.pedestrian import (
    EDGES,
    check_identities,
    edge_band,
    paste_region,
    pedestrian_box,
    pick_source,
    source_box,
    source_pool,
)
from occsim.plan import plan_boxes
from occsim.schema import OCCLUSION_KINDS, SPLITS, OccType
from occsim.store import SplitManifest, open_h5, read_images, read_store
from occsim.validation import _subset
from tests.conftest import MARKET_FILES, make_market_tree, write_jpeg

SIZE = (32, 16)


def _config(src: Path, out: Path, **kwargs) -> GenerateConfig:
    base = dict(src=src, out=out, workers=1, image_size=SIZE, types=("pedestrian",), chunk_size=3, progress=False,
                occluder=OccluderParams(patch=10))
    base.update(kwargs)
    return GenerateConfig(**base)


def _touches(box: tuple[int, int, int, int], height: int, width: int) -> str:
    """The edge a band lies along ("" when it is not a full band at an edge)."""
    x, y, w, h = box
    if (x, w) == (0, width) and y + h == height:
        return "bottom"
    if (y, h) == (0, height) and x == 0:
        return "left"
    if (y, h) == (0, height) and x + w == width:
        return "right"
    return ""


# ---------------------------------------------------------------------------------- geometry


def test_box_touches_an_edge_inside_the_image_with_area_in_range() -> None:
    params = OccluderParams(area_min=0.15, area_max=0.35)
    height, width = 128, 64
    edges, fractions = set(), []
    for seed in range(300):
        x, y, w, h = box = pedestrian_box((height, width), params, np.random.default_rng(seed))
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height and w >= 1 and h >= 1
        edge = _touches(box, height, width)
        assert edge in EDGES, box
        edges.add(edge)
        fraction = w * h / (height * width)
        # One side is rounded to whole pixels: half a pixel of that side either way.
        assert params.area_min - 0.5 / width <= fraction <= params.area_max + 0.5 / width
        fractions.append(fraction)
    assert edges == set(EDGES)  # the passer-by enters from the bottom and from both sides
    assert min(fractions) < 0.17 and max(fractions) > 0.33


def test_edge_band_and_its_source_region() -> None:
    assert edge_band((128, 64), "left", 0.25) == (0, 0, 16, 128)
    assert edge_band((128, 64), "right", 0.25) == (48, 0, 16, 128)
    assert edge_band((128, 64), "bottom", 0.25) == (0, 96, 64, 32)
    assert edge_band((128, 64), "left", 0.001) == (0, 0, 1, 128)  # at least one pixel
    assert edge_band((128, 64), "bottom", 1.0) == (0, 0, 64, 128)
    with pytest.raises(ValueError, match="unknown edge 'top'"):
        edge_band((128, 64), "top", 0.2)
    # The middle of the passer-by for a side band, their top (head and shoulders) for the bottom.
    assert source_box((0, 0, 16, 128), (128, 64)) == (24, 0, 16, 128)
    assert source_box((48, 0, 16, 128), (128, 64)) == (24, 0, 16, 128)
    assert source_box((0, 0, 15, 128), (128, 64)) == (24, 0, 15, 128)
    assert source_box((0, 96, 64, 32), (128, 64)) == (0, 0, 64, 32)


def test_paste_copies_the_source_region_and_keeps_the_rest() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    source = rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)
    before = image.copy()
    out = paste_region(image, source, (11, 0, 5, 32))  # at the right edge, from the source's middle
    assert np.array_equal(out[:, 11:], source[:, 5:10])
    assert np.array_equal(out[:, :11], image[:, :11])
    out = paste_region(image, source, (0, 24, 16, 8))
    assert np.array_equal(out[24:], source[:8]) and np.array_equal(out[:24], image[:24])
    assert np.array_equal(image, before)
    with pytest.raises(ValueError, match="source shape"):
        paste_region(image, source[:10], (0, 0, 5, 32))


# ------------------------------------------------------------------------------ source choice


def test_source_is_another_real_identity_when_there_is_one() -> None:
    pid = np.array([2, 2, 7, -1, 0, 10, 10])
    real = np.array([False, False, False, False, False, False, True])  # row 6: a genuinely occluded crop
    pool = source_pool(pid, real)
    for target, allowed in ((2, {2, 5}), (7, {0, 1, 5}), (10, {0, 1, 2}), (-1, {0, 1, 2, 5})):
        picks = {pick_source(pool, target, np.random.default_rng(s)) for s in range(200)}
        assert picks == allowed, (target, picks)  # uniform: every candidate drawn, nothing else
    # Junk and distractors only when no real identity is left; never the same pid; -1 when none.
    pool = source_pool(np.array([5, 5, -1, 0]))
    assert {pick_source(pool, 5, np.random.default_rng(s)) for s in range(50)} == {2, 3}
    assert pick_source(source_pool(np.array([5, 5])), 5, np.random.default_rng(0)) == -1


def test_plan_draws_the_source_after_the_box_from_the_same_rng() -> None:
    params = OccluderParams()
    pool = source_pool(np.array([1, 1, 2, 3]))
    boxes, sources = plan_boxes(4, 1, 2, [2, 3], ("mean", "pedestrian"), params, (128, 64), pool)
    assert sources[0].tolist() == [-1, -1]  # mean copies show no other image
    for i, pid in enumerate((2, 3)):
        rng = np.random.default_rng([4, 1, 2 + i, int(OccType.PEDESTRIAN)])
        assert tuple(boxes[1, i]) == pedestrian_box((128, 64), params, rng)
        assert sources[1, i] == pick_source(pool, pid, rng)


def test_a_split_of_one_identity_is_refused(tmp_path: Path) -> None:
    check_identities(np.array([], dtype=np.int32), "train", tmp_path)  # empty: nothing to occlude
    with pytest.raises(BadInputError, match=r"query split holds only pid 4; leave query out of --occlude"):
        check_identities(np.array([4, 4]), "query", tmp_path)
    files = tuple(f for f in MARKET_FILES if f[0] != "query") + (("query", "0001_c2s1_001051_00.jpg"),)
    market = make_market_tree(tmp_path / "M", files)
    with pytest.raises(BadInputError, match="--type pedestrian pastes another identity.*pid 1"):
        generate(_config(market, tmp_path / "o.h5"))
    assert not (tmp_path / "o.h5").exists()
    generate(_config(market, tmp_path / "o.h5", occlude=("train",)))  # the query split is not occluded: fine


# ------------------------------------------------------------------------------ the file


@pytest.fixture()
def market(tmp_path: Path) -> Path:
    return make_market_tree(tmp_path / "Market")


def test_generated_rows_paste_another_identity(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    params = OccluderParams(patch=10, area_min=0.2, area_max=0.4)
    report = generate(_config(market, out, types=("pedestrian", "mean"), occluder=params, seed=3,
                              occlude_gallery=True))
    assert report.rows["train"] == {"clean": 4, "mean": 4, "pedestrian": 4}
    info = read_store(out)
    assert info.generator_args["types"] == ["mean", "pedestrian"]  # code order
    with open_h5(out) as h5:
        for split_index, split in enumerate(SPLITS):
            m = info.splits[split]
            n = int((m.occ_type == 0).sum())
            images = read_images(h5, split, range(len(m)))
            rows = m.rows("occluded:pedestrian")
            assert rows.tolist() == list(range(2 * n, 3 * n))  # after the mean block
            assert np.all(m.occ_source[m.occ_type != OccType.PEDESTRIAN] == -1)
            for row in rows:
                clean, src = int(m.clean_index[row]), int(m.occ_source[row])
                assert 0 <= src < n and src != clean and not m.occluded[src]
                assert m.pid[src] != m.pid[row] and m.pid[src] > 0
                x, y, w, h = box = tuple(int(v) for v in m.box[row])
                assert _touches(box, *SIZE) in EDGES
                assert 0.2 - 0.5 / SIZE[1] <= w * h / (SIZE[0] * SIZE[1]) <= 0.4 + 0.5 / SIZE[1]
                sx, sy, _, _ = source_box(box, SIZE)
                assert np.array_equal(images[row][y : y + h, x : x + w], images[src][sy : sy + h, sx : sx + w])
                outside = np.ones(SIZE, dtype=bool)
                outside[y : y + h, x : x + w] = False
                assert np.array_equal(images[row][outside], images[clean][outside])
                # The box and the source are the per-image generator's, as documented.
                rng = np.random.default_rng([3, split_index, clean, int(OccType.PEDESTRIAN)])
                assert box == pedestrian_box(SIZE, params, rng)
    gallery = info.splits["gallery"]  # pids -1, 0, 1, 3, 3: junk and distractors never pasted
    assert set(gallery.pid[gallery.occ_source[gallery.occ_source >= 0]].tolist()) <= {1, 3}


def test_workers_do_not_change_the_bytes(market: Path, tmp_path: Path) -> None:
    for i in range(10):  # several chunks for both workers
        write_jpeg(market / "bounding_box_train" / f"0{20 + i}_c{1 + i % 6}s1_000{100 + i}_01.jpg", seed=50 + i)
    one, two = tmp_path / "w1.h5", tmp_path / "w2.h5"
    generate(_config(market, one, types=("black", "pedestrian"), workers=1, chunk_size=2))
    generate(_config(market, two, types=("black", "pedestrian"), workers=2, chunk_size=2))
    assert one.read_bytes() == two.read_bytes()
    assert (read_store(one).splits["train"].occ_source >= 0).sum() == 14


def test_fingerprint_covers_the_sources(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    generate(_config(market, out))
    with h5py.File(out, "r+") as h5:
        sources = h5["query/occ_source"][()]
        h5["query/occ_source"][2:] = sources[2:][::-1]  # the two query rows swap passers-by
        assert not np.array_equal(h5["query/occ_source"][()], sources)
    with pytest.raises(BadInputError, match="do not match the stored fingerprint"):
        read_store(out)
    with h5py.File(out, "r+") as h5:
        h5["query/occ_source"][0] = 99
    with pytest.raises(BadInputError, match="'query/occ_source' points outside the split"):
        read_store(out)


def test_a_file_without_occ_source_still_reads(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.h5"
    report = generate(_config(market, out, types=("mean", "random")))
    with h5py.File(out, "r+") as h5:  # as written before occ_source existed
        for split in SPLITS:
            del h5[split]["occ_source"]
    info = read_store(out)  # the fingerprint of a file without sources never covered them
    assert info.fingerprint == report.fingerprint
    for split in SPLITS:
        m = info.splits[split]
        assert m.occ_source.dtype == np.int32 and m.occ_source.tolist() == [-1] * len(m)


def test_split_val_remaps_the_sources() -> None:
    m = SplitManifest(pid=[1, 2, 3, 1, 2], camid=[1] * 5, occluded=[False] * 3 + [True] * 2,
                      occ_type=[0, 0, 0, 5, 5], box=[[-1] * 4] * 3 + [[0, 0, 2, 4]] * 2,
                      clean_index=[0, 1, 2, 0, 1], path=list("abcab"), occ_source=[-1, -1, -1, 2, 0])
    kept, _ = _subset(m, np.array([0, 2, 3]), relabel=False)  # row 3's source (2) kept, now row 1
    assert kept.occ_source.tolist() == [-1, -1, 1]
    kept, _ = _subset(m, np.array([1, 4]), relabel=False)  # row 4's source (0) left out: -1
    assert kept.occ_source.tolist() == [-1, -1]


# ------------------------------------------------------------------------------ commands


def test_cli_generate_info_preview_and_query_set(market: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    run = CliRunner().invoke
    result = run(main, ["generate", "--src", str(market), "--out", str(out), "--type", "pedestrian",
                        "--size", "32x16", "--workers", "1", "--area-min", "0.2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "train         8 rows: 4 clean, 4 pedestrian" in result.stdout
    result = run(main, ["info", str(out)], catch_exceptions=False)
    assert result.exit_code == 0 and "4 clean; occluded: 4 pedestrian" in result.stdout
    png = tmp_path / "p.png"
    result = run(main, ["preview", str(out), "--out", str(png), "--n", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "pedestrian" in OCCLUSION_KINDS
    from reid.engine.queries import expand_queries

    assert expand_queries(["occluded:pedestrian"], read_store(out)) == ["occluded:pedestrian"]
    assert expand_queries(["occluded"], read_store(out)) == ["occluded:pedestrian"]
