"""Training on chosen occluder types only (the occluders study's train x test matrix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import BadInputError
from occsim.schema import occ_type_code
from reid.data.datasets import build_train_dataset
from tests.conftest import write_tiny_store


@pytest.fixture(scope="module")
def three_types(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_store(tmp_path_factory.mktemp("types") / "t.h5", occ_types=("mean", "black", "random"))


def test_paired_set_draws_only_copies_of_the_asked_type(three_types: Path) -> None:
    dataset = build_train_dataset(three_types, "both", seed=0, occluder_types=("black",))
    assert {int(dataset[i]["occ_type"]) for i in range(len(dataset))} == {occ_type_code("black")}
    mixed = build_train_dataset(three_types, "both", seed=0)
    assert len({int(mixed[i]["occ_type"]) for i in range(len(mixed))}) > 1


def test_occluded_only_set_keeps_the_asked_types(three_types: Path) -> None:
    dataset = build_train_dataset(three_types, "occluded", seed=0, occluder_types=("mean", "random"))
    assert {int(dataset[i]["occ_type"]) for i in range(len(dataset))} == {occ_type_code("mean"), occ_type_code("random")}
    assert len(dataset) == 2 * 24


def test_an_absent_type_is_a_bad_input(tiny_store: Path) -> None:
    with pytest.raises(BadInputError, match="no occluded copies of type black"):
        build_train_dataset(tiny_store, "both", occluder_types=("black",))
