"""Readers of the real benchmarks on hand-made trees named exactly as the downloads are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from occsim.errors import BadInputError
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
