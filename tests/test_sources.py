"""Source readers: Market-1501 and DukeMTMC-reID names, junk/distractors, labels, bad layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import BadInputError
from tests.conftest import MARKET_FILES, make_market_tree, write_jpeg
from occsim.sources import DUKE, MARKET, parse_name, read_source, summarize_source, train_labels

# A tiny Market-like tree: (folder, file name); pixel content does not matter here.
def test_parse_market_and_duke_names() -> None:
    assert parse_name("0002_c1s1_000451_03.jpg", MARKET) == (2, 1)
    assert parse_name("-1_c3s2_000123_01.jpg", MARKET) == (-1, 3)
    assert parse_name("0000_c6s4_002427_02.jpg", MARKET) == (0, 6)
    assert parse_name("0001_c2_f0046182.jpg", DUKE) == (1, 2)
    assert parse_name("0001_c2_f0046182.jpg", MARKET) is None
    assert parse_name("0002_c1s1_000451_03.jpg", DUKE) is None
    assert parse_name("0002_c1s1_000451_03.png", MARKET) is None


def test_market_tree_records_labels_and_counts(tmp_path: Path) -> None:
    source = read_source(make_market_tree(tmp_path / "m"))
    assert source.layout == "market1501"
    assert source.name == "m"
    train = source.splits["train"]
    assert [r.path for r in train] == sorted(f"bounding_box_train/{n}" for f, n in MARKET_FILES if f == "bounding_box_train")
    assert [(r.pid, r.camid) for r in train] == [(2, 1), (2, 2), (7, 3), (10, 6)]
    gallery = source.splits["gallery"]
    # Sorted by path: "-1_" < "0000_" < "0001_" < "0003_c1" < "0003_c5".
    assert [(r.pid, r.camid) for r in gallery] == [(-1, 1), (0, 5), (1, 4), (3, 1), (3, 5)]
    assert all(r.path.startswith("bounding_box_test/") for r in gallery)  # Thumbs.db skipped
    assert [(r.pid, r.camid) for r in source.splits["query"]] == [(1, 1), (3, 2)]
    assert train_labels([r.pid for r in train]).tolist() == [0, 0, 1, 2]

    summary = summarize_source(source)
    assert (summary["train"].images, summary["train"].identities, summary["train"].cameras) == (4, 3, 4)
    g = summary["gallery"]
    assert (g.images, g.identities, g.cameras, g.junk, g.distractors) == (5, 2, 3, 1, 1)


def test_train_labels_contiguous_in_pid_order() -> None:
    assert train_labels(np.array([1500, 2, 7, 2, 1500])).tolist() == [2, 0, 1, 0, 2]
    assert train_labels(np.array([5])).dtype == np.int32


def test_duke_tree(tmp_path: Path) -> None:
    files = (
        ("bounding_box_train", "0005_c2_f0046182.jpg"),
        ("bounding_box_train", "0001_c8_f0000001.jpg"),
        ("query", "0010_c1_f0001234.jpg"),
        ("bounding_box_test", "0010_c3_f0004321.jpg"),
        ("bounding_box_test", "7000_c5_f0000099.jpg"),
    )
    source = read_source(make_market_tree(tmp_path / "duke", files))
    assert source.layout == "dukemtmc-reid"
    assert [(r.pid, r.camid) for r in source.splits["train"]] == [(1, 8), (5, 2)]
    assert [(r.pid, r.camid) for r in source.splits["gallery"]] == [(10, 3), (7000, 5)]


def test_unparsable_jpg_is_named(tmp_path: Path) -> None:
    root = make_market_tree(tmp_path / "m")
    write_jpeg(root / "query" / "holiday photo.jpg", seed=99)
    with pytest.raises(BadInputError, match=r"query/holiday photo\.jpg: file name does not parse as market1501"):
        read_source(root)


def test_mixed_layout_names_the_odd_file(tmp_path: Path) -> None:
    root = make_market_tree(tmp_path / "m")
    write_jpeg(root / "bounding_box_train" / "0001_c2_f0046182.jpg", seed=98)
    with pytest.raises(BadInputError, match=r"0001_c2_f0046182\.jpg"):
        read_source(root)


@pytest.mark.parametrize("name", ["-1_c1s1_000401_03.jpg", "0000_c1s1_000401_03.jpg"])
def test_junk_or_distractor_outside_gallery_is_an_error(tmp_path: Path, name: str) -> None:
    root = make_market_tree(tmp_path / "m")
    write_jpeg(root / "bounding_box_train" / name, seed=97)
    with pytest.raises(BadInputError, match=f"bounding_box_train/{name}: junk"):
        read_source(root)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no such folder"):
        read_source(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty"):
        read_source(tmp_path / "empty")


def test_not_market_layout_names_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write_jpeg(root / "query" / "0001_c1s1_001051_00.jpg", seed=0)
    with pytest.raises(BadInputError, match=r"missing bounding_box_train/, bounding_box_test/") as info:
        read_source(root)
    assert "query/" not in str(info.value).split("missing")[1].split(";")[0]


def test_parent_of_the_dataset_suggests_the_right_folder(tmp_path: Path) -> None:
    make_market_tree(tmp_path / "download" / "Market-1501-v15.09.15")
    with pytest.raises(BadInputError, match=r"did you mean --src .*Market-1501-v15\.09\.15"):
        read_source(tmp_path / "download")


def test_split_folder_without_images(tmp_path: Path) -> None:
    root = make_market_tree(tmp_path / "m")
    for f in (root / "query").iterdir():
        f.unlink()
    (root / "query" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(BadInputError, match=r"query: no \.jpg images"):
        read_source(root)
