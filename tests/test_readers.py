"""Readers of the real benchmarks on hand-made trees named exactly as the downloads are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from common.errors import BadInputError
from occsim.sources import read_source
from occsim.sources.cuhk01 import cuhk01_split, parse_cuhk01_name


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 16), gray: bool = False) -> None:
    """A small smooth image in the format of ``path``'s suffix (distinct per seed)."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, size=(4, 2, 3), dtype=np.uint8), (size[1], size[0]),
                       interpolation=cv2.INTER_LINEAR)
    if gray:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def make_cuhk01(root: Path, n_ids: int = 5) -> Path:
    """``campus/NNNNCCC.png``: n_ids identities x 4 images (001-002 camera A, 003-004 camera B)."""
    for pid in range(1, n_ids + 1):
        for image in range(1, 5):
            write_image(root / "campus" / f"{pid:04d}{image:03d}.png", seed=pid * 10 + image, size=(160, 60))
    (root / "campus" / "Thumbs.db").write_bytes(b"x")
    return root


def test_cuhk01_names() -> None:
    assert parse_cuhk01_name("0001001.png") == (1, 1)
    assert parse_cuhk01_name("0001002.png") == (1, 1)
    assert parse_cuhk01_name("0971003.png") == (971, 2)
    assert parse_cuhk01_name("0971004.png") == (971, 2)
    assert parse_cuhk01_name("0001000.png") is None
    assert parse_cuhk01_name("0001001.jpg") is None
    assert parse_cuhk01_name("001001.png") is None


def test_cuhk01_split_is_the_half_of_a_seeded_permutation() -> None:
    pids = list(range(1, 972))
    train = cuhk01_split(pids, 0)
    assert len(train) == 485 and train == sorted(train)
    expected = sorted(int(p) for p in np.arange(1, 972)[np.random.default_rng(0).permutation(971)[:485]])
    assert train == expected
    assert cuhk01_split(pids, 0) == train and cuhk01_split(pids, 1) != train


def test_cuhk01_tree(tmp_path: Path) -> None:
    source = read_source(make_cuhk01(tmp_path / "CUHK01"))
    assert source.layout == "cuhk01"
    train_ids = cuhk01_split([1, 2, 3, 4, 5], 0)
    assert len(train_ids) == 2
    assert source.args["train_ids"] == train_ids and source.args["split_seed"] == 0
    train = source.splits["train"]
    assert [r.path for r in train] == [f"campus/{p:04d}{i:03d}.png" for p in train_ids for i in range(1, 5)]
    assert [r.camid for r in train] == [1, 1, 2, 2] * 2
    test_ids = sorted(set(range(1, 6)) - set(train_ids))
    assert [(r.path, r.pid, r.camid) for r in source.splits["query"]] == [
        (f"campus/{p:04d}{i:03d}.png", p, 1) for p in test_ids for i in (1, 2)]
    assert [(r.path, r.pid, r.camid) for r in source.splits["gallery"]] == [
        (f"campus/{p:04d}{i:03d}.png", p, 2) for p in test_ids for i in (3, 4)]
    assert not any(r.occluded for recs in source.splits.values() for r in recs)
    other = read_source(tmp_path / "CUHK01", split_seed=3)
    assert other.args["split_seed"] == 3


def test_cuhk01_bad_name_is_named(tmp_path: Path) -> None:
    root = make_cuhk01(tmp_path / "CUHK01", n_ids=2)
    write_image(root / "campus" / "img_12.png", seed=1)
    with pytest.raises(BadInputError, match=r"campus/img_12\.png: file name does not parse as cuhk01"):
        read_source(root, layout="cuhk01")


# ---------------------------------------------------------------------------------------
# MSMT17: V1 list files + train/ test/, V2 the same lists + mask_train_v2/ mask_test_v2/.

MSMT_TRAIN = ("0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_05_0303morning_0016_1.jpg 0",
              "0001/0001_000_14_0303noon_0943_0.jpg 1")
MSMT_VAL = ("0001/0001_002_15_0303noon_0944_0.jpg 1",)
MSMT_QUERY = ("0000/0000_000_01_0303morning_0008_0.jpg 0", "0002/0002_011_09_0304afternoon_1234_2.jpg 2")
MSMT_GALLERY = ("0000/0000_003_12_0303afternoon_0010_0.jpg 0", "0002/0002_000_03_0304morning_0101_1.jpg 2",
                "0002/0002_001_09_0304afternoon_1230_0.jpg 2")


def make_msmt17(root: Path, version: str = "V1") -> Path:
    train, test = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    for i, (folder, lines, list_name) in enumerate([(train, MSMT_TRAIN, "list_train.txt"),
                                                    (train, MSMT_VAL, "list_val.txt"),
                                                    (test, MSMT_QUERY, "list_query.txt"),
                                                    (test, MSMT_GALLERY, "list_gallery.txt")]):
        for j, line in enumerate(lines):
            write_image(root / folder / line.split()[0], seed=10 * i + j)
        (root / list_name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_lists(tmp_path: Path, version: str) -> None:
    root = make_msmt17(tmp_path / f"MSMT17_{version}", version)
    source = read_source(root)
    assert source.layout == "msmt17" and source.args == {"version": version}
    train_folder, test_folder = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    # list_val.txt is not read (torchreid's and fast-reid's default).
    assert [(r.path, r.pid, r.camid) for r in source.splits["train"]] == [
        (f"{train_folder}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 1),
        (f"{train_folder}/0000/0000_001_05_0303morning_0016_1.jpg", 0, 5),
        (f"{train_folder}/0001/0001_000_14_0303noon_0943_0.jpg", 1, 14)]
    assert [(r.pid, r.camid) for r in source.splits["query"]] == [(0, 1), (2, 9)]
    assert [(r.pid, r.camid) for r in source.splits["gallery"]] == [(0, 12), (2, 3), (2, 9)]
    assert all(r.path.startswith(f"{test_folder}/") for r in source.splits["gallery"])


def test_msmt17_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    root = make_msmt17(tmp_path / "MSMT17_V1")
    (root / "list_query.txt").write_text(MSMT_QUERY[0] + "\n0002/0002_011_09_0304afternoon_1234_2.jpg two\n")
    with pytest.raises(BadInputError, match=r"list_query\.txt:2: pid 'two' is not an integer"):
        read_source(root)
    (root / "list_query.txt").write_text(MSMT_QUERY[0] + "\n\n0009/0009_000_02_x_1_0.jpg 9\n")
    with pytest.raises(BadInputError, match=r"list_query\.txt:3: .*0009_000_02_x_1_0\.jpg does not exist"):
        read_source(root)


# ---------------------------------------------------------------------------------------
# CUHK03-NP, Occluded-Duke: the Market folders under another name.

CUHK03_FILES = (("bounding_box_train", "0001_c1_1.png"), ("bounding_box_train", "0001_c2_6.png"),
                ("query", "0005_c1_2.png"), ("bounding_box_test", "0005_c2_7.png"),
                ("bounding_box_test", "0006_c1_1.png"))


def make_cuhk03_np(root: Path, variants: tuple[str, ...] = ("detected", "labeled")) -> Path:
    for v, variant in enumerate(variants):
        for i, (folder, name) in enumerate(CUHK03_FILES):
            write_image(root / variant / folder / name, seed=100 * v + i, gray=(i == 0))
    return root


def test_cuhk03_np_variants(tmp_path: Path) -> None:
    root = make_cuhk03_np(tmp_path / "cuhk03-np")
    detected = read_source(root)
    assert detected.layout == "cuhk03-np" and detected.args == {"variant": "detected"}
    assert [(r.path, r.pid, r.camid) for r in detected.splits["train"]] == [
        ("detected/bounding_box_train/0001_c1_1.png", 1, 1), ("detected/bounding_box_train/0001_c2_6.png", 1, 2)]
    labeled = read_source(root, variant="labeled")
    assert [r.path for r in labeled.splits["gallery"]] == [
        "labeled/bounding_box_test/0005_c2_7.png", "labeled/bounding_box_test/0006_c1_1.png"]
    only_labeled = make_cuhk03_np(tmp_path / "only", ("labeled",))
    with pytest.raises(BadInputError, match=r"no detected/ subfolder \(found labeled/\); pass --variant"):
        read_source(only_labeled)
    with pytest.raises(BadInputError, match=r"--variant 'labeled': only CUHK03-NP has variants"):
        read_source(make_cuhk01(tmp_path / "c1", 2), variant="labeled")


DUKE_FILES = (("bounding_box_train", "0005_c2_f0046182.jpg"), ("query", "0010_c1_f0001234.jpg"),
              ("bounding_box_test", "0010_c3_f0004321.jpg"), ("bounding_box_test", "7000_c5_f0000099.jpg"))


def make_duke(root: Path) -> Path:
    for i, (folder, name) in enumerate(DUKE_FILES):
        write_image(root / folder / name, seed=i)
    return root


def test_occluded_duke_by_folder_name_or_forced(tmp_path: Path) -> None:
    occluded = read_source(make_duke(tmp_path / "Occluded_Duke"))
    assert occluded.layout == "occluded-duke"
    assert [r.occluded for r in occluded.splits["query"]] == [True]
    assert not any(r.occluded for s in ("train", "gallery") for r in occluded.splits[s])
    plain = make_duke(tmp_path / "DukeMTMC-reID")
    assert read_source(plain).layout == "dukemtmc-reid"
    assert not any(r.occluded for recs in read_source(plain).splits.values() for r in recs)
    assert read_source(plain, layout="occluded-duke").splits["query"][0].occluded


# ---------------------------------------------------------------------------------------
# Occluded-REID (ID folders, .tif) and Partial-REID (flat .jpg): test only.


def make_occluded_reid(root: Path, ids: tuple[int, ...] = (1, 2), per_id: int = 2) -> Path:
    for pid in ids:
        for k in range(1, per_id + 1):
            write_image(root / "occluded_body_images" / f"{pid:03d}" / f"{pid:03d}_{k:02d}.tif", seed=pid * 10 + k)
            write_image(root / "whole_body_images" / f"{pid:03d}" / f"{pid:03d}_{k:02d}.tif", seed=pid * 10 + k + 5)
    return root


def make_partial_reid(root: Path) -> Path:
    for pid in (1, 3):
        for k in (1, 2):
            for i, folder in enumerate(("partial_body_images", "whole_body_images", "occluded_body_images")):
                write_image(root / folder / f"{pid:03d}_{k:03d}.jpg", seed=pid * 100 + k * 10 + i)
    return root


def test_occluded_reid_is_test_only_and_really_occluded(tmp_path: Path) -> None:
    source = read_source(make_occluded_reid(tmp_path / "Occluded_REID"))
    assert source.layout == "occluded-reid" and source.test_only
    assert source.splits["train"] == ()
    assert [(r.path, r.pid, r.camid, r.occluded) for r in source.splits["query"]] == [
        (f"occluded_body_images/{p:03d}/{p:03d}_{k:02d}.tif", p, 1, True) for p in (1, 2) for k in (1, 2)]
    assert [(r.path, r.pid, r.camid, r.occluded) for r in source.splits["gallery"]] == [
        (f"whole_body_images/{p:03d}/{p:03d}_{k:02d}.tif", p, 2, False) for p in (1, 2) for k in (1, 2)]


def test_partial_reid_queries_are_the_partial_crops(tmp_path: Path) -> None:
    source = read_source(make_partial_reid(tmp_path / "Partial-REID_Dataset"))
    assert source.layout == "partial-reid" and source.test_only
    assert [r.path for r in source.splits["query"]] == [
        "partial_body_images/001_001.jpg", "partial_body_images/001_002.jpg",
        "partial_body_images/003_001.jpg", "partial_body_images/003_002.jpg"]
    assert all(r.occluded and r.camid == 1 for r in source.splits["query"])
    assert [r.pid for r in source.splits["gallery"]] == [1, 1, 3, 3]


def test_file_in_another_identity_folder(tmp_path: Path) -> None:
    root = make_occluded_reid(tmp_path / "Occluded_REID")
    write_image(root / "occluded_body_images" / "002" / "001_09.tif", seed=1)
    with pytest.raises(BadInputError, match=r"002/001_09\.tif: identity 1 in the folder of identity 002"):
        read_source(root)


# ---------------------------------------------------------------------------------------
# The generic CSV manifest and the unknown layout.


def make_csv_tree(root: Path, lines: list[str] | None = None) -> Path:
    files = ["cam1/a.png", "cam2/b.jpg", "cam3/c.bmp", "cam3/d.tif", "x/e.png"]
    for i, rel in enumerate(files):
        write_image(root / rel, seed=i)
    lines = lines if lines is not None else [
        "path,pid,camid,split", "cam1/a.png,7,1,train", "x/e.png,8,2,train",
        "cam2/b.jpg,7,2,query", "cam3/c.bmp,7,3,gallery", "cam3/d.tif,-1,3,gallery"]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def test_csv_manifest(tmp_path: Path) -> None:
    source = read_source(make_csv_tree(tmp_path / "mine"))
    assert source.layout == "csv" and source.name == "mine"
    assert [(r.path, r.pid, r.camid) for r in source.splits["train"]] == [("cam1/a.png", 7, 1), ("x/e.png", 8, 2)]
    assert [(r.path, r.pid, r.camid) for r in source.splits["gallery"]] == [("cam3/c.bmp", 7, 3), ("cam3/d.tif", -1, 3)]
    assert read_source(tmp_path / "mine" / "manifest.csv").splits == source.splits  # --src FILE.csv


@pytest.mark.parametrize("lines, match", [
    (["path,pid,split", "cam1/a.png,7,train"], r"manifest\.csv:1: missing column camid"),
    (["path,pid,camid,split", "cam1/a.png,7,1,train", "cam1/nope.png,7,1,query"],
     r"manifest\.csv:3: .*cam1/nope\.png does not exist"),
    (["path,pid,camid,split", "cam1/a.png,seven,1,train"], r"manifest\.csv:2: pid 'seven' is not an integer"),
    (["path,pid,camid,split", "cam1/a.png,7,1,train", "cam2/b.jpg,7,2,probe"],
     r"manifest\.csv:3: unknown split 'probe'; use train, query, gallery"),
    (["path,pid,camid,split", "cam2/b.jpg,7,2,query"], r"manifest\.csv: no gallery rows"),
])
def test_csv_errors_name_file_and_line(tmp_path: Path, lines: list[str], match: str) -> None:
    with pytest.raises(BadInputError, match=match):
        read_source(make_csv_tree(tmp_path / "mine", lines))


def test_unknown_layout_lists_what_it_looked_for(tmp_path: Path) -> None:
    write_image(tmp_path / "holiday" / "IMG_0001.jpg", seed=0)
    with pytest.raises(BadInputError, match=r"no known dataset layout; looked for manifest\.csv .*campus/NNNNCCC\.png"):
        read_source(tmp_path / "holiday")
    with pytest.raises(BadInputError, match=r"--layout 'viper': unknown layout; use one of market1501"):
        read_source(tmp_path / "holiday", layout="viper")


def test_parent_folder_suggests_the_dataset(tmp_path: Path) -> None:
    make_cuhk01(tmp_path / "CUHK03_dataset" / "CUHK01", n_ids=2)
    (tmp_path / "CUHK03_dataset" / "README.md").write_text("x")
    with pytest.raises(BadInputError, match=r"CUHK01 is cuhk01 \(did you mean --src .*CUHK01\?\)"):
        read_source(tmp_path / "CUHK03_dataset")
