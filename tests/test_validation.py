"""Carving a validation file out of the training identities (occsim.validation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import BadInputError
from occsim.store import open_h5, read_images, read_store
from occsim.validation import carve_validation


@pytest.fixture(scope="module")
def carved(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return carve_validation(tiny_store, tmp_path_factory.mktemp("val") / "val.h5", fraction=0.34, seed=3)


def test_held_out_identities_leave_the_training_split(tiny_store: Path, carved: Path) -> None:
    source, val = read_store(tiny_store), read_store(carved)
    train_pids = set(val.split("train").pid.tolist())
    held = set(val.split("query").pid.tolist()) | set(val.split("gallery").pid.tolist())
    assert len(held) == 2  # round(6 * 0.34)
    assert not train_pids & held
    assert train_pids | held == set(source.split("train").pid.tolist())
    labels = val.split("train").label
    # Relabelled contiguously in pid order.
    pids = val.split("train").pid
    assert sorted(set(labels.tolist())) == list(range(len(train_pids)))
    assert (np.searchsorted(np.unique(pids), pids) == labels).all()


def test_every_query_has_a_gallery_match_in_another_camera(carved: Path) -> None:
    val = read_store(carved)
    query, gallery = val.split("query"), val.split("gallery")
    assert not gallery.occluded.any()
    for pid, cam in zip(query.pid, query.camid):
        assert ((gallery.pid == pid) & (gallery.camid != cam)).any()
    # Tiny store cameras per identity are 1, 2, 3, 1: camera 1's first image cannot be a query
    # (its only other image is in camera 1 too), so queries are cameras 2 and 3.
    clean = ~query.occluded
    assert sorted(set(query.camid[clean].tolist())) == [2, 3]
    assert clean.sum() == 4 and gallery.pid.size == 4


def test_occluded_query_copies_point_at_their_clean_row_and_pixels_are_copied(tiny_store: Path, carved: Path) -> None:
    source, val = read_store(tiny_store), read_store(carved)
    query = val.split("query")
    n_clean = int((~query.occluded).sum())
    assert (~query.occluded[:n_clean]).all() and query.occluded[n_clean:].all()
    assert (query.clean_index[:n_clean] == np.arange(n_clean)).all()
    src_train = source.split("train")
    with open_h5(tiny_store) as src_h5, open_h5(carved) as val_h5:
        for row in range(len(query)):
            clean_row = query.clean_index[row]
            assert query.path[row] == query.path[clean_row]
            # Find the source row by (path, occluded, box) and compare pixels.
            match = [r for r in range(len(src_train)) if src_train.path[r] == query.path[row]
                     and src_train.occluded[r] == query.occluded[row] and (src_train.box[r] == query.box[row]).all()]
            assert len(match) == 1
            assert (read_images(val_h5, "query", [row]) == read_images(src_h5, "train", match)).all()


def test_carving_is_deterministic_and_records_its_origin(tiny_store: Path, carved: Path, tmp_path: Path) -> None:
    again = carve_validation(tiny_store, tmp_path / "again.h5", fraction=0.34, seed=3)
    assert read_store(again).fingerprint == read_store(carved).fingerprint
    assert read_store(carved).generator_args["carved_from"] == read_store(tiny_store).fingerprint
    other = carve_validation(tiny_store, tmp_path / "other.h5", fraction=0.34, seed=4)
    assert read_store(other).fingerprint != read_store(carved).fingerprint


def test_a_fraction_that_empties_a_side_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="^--fraction 0.01: holds out 0 of"):  # split-val's option
        carve_validation(tiny_store, tmp_path / "v.h5", fraction=0.01)
    with pytest.raises(BadInputError, match="^--val-fraction 0.01: holds out 0 of"):  # the study's
        carve_validation(tiny_store, tmp_path / "v.h5", fraction=0.01, option="--val-fraction")
    assert not (tmp_path / "v.h5").exists()


def test_split_val_command_writes_a_valid_file_and_refuses_to_overwrite(tiny_store: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.occsim_cli import main

    out = tmp_path / "val.h5"
    args = ["split-val", str(tiny_store), "--out", str(out), "--fraction", "0.34", "--seed", "3"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "query" in first.output and read_store(out).generator_args["val_fraction"] == 0.34
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output
