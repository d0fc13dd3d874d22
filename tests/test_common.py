"""The shared base: one atomic-write family, the sheet helpers, and reid's narrow use of occsim."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from common.atomic import atomic_open, atomic_path
from common.sheets import draw_box, grid, labelled

REPO = Path(__file__).resolve().parents[1]


def test_atomic_open_renames_on_success_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.pt"
    with atomic_open(target, "wb", fsync=True) as handle:
        handle.write(b"first")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_bytes() == b"first"
    with pytest.raises(ValueError, match="boom"):
        with atomic_open(target) as handle:
            handle.write(b"half")
            raise ValueError("boom")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["model.pt"]


def test_atomic_path_names_carry_the_pid_so_killed_writers_are_swept(tmp_path: Path) -> None:
    import os

    dead = tmp_path / ".out.h5.999999999-abc.tmp"  # no such process
    dead.write_bytes(b"left by kill -9")
    with atomic_path(tmp_path / "out.h5") as tmp:
        assert tmp.name.startswith(f".out.h5.{os.getpid()}-") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_grid_lays_cells_out_with_gaps_and_a_margin() -> None:
    cells = [np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)]
    sheet = grid(cells, columns=2, gap=1)
    # 2 columns: 1 + 3 + 1 + 3 + 1 wide; 2 rows: 1 + 2 + 1 + 2 + 1 high.
    assert sheet.shape == (7, 9, 3)
    assert sheet[1, 1, 0] == 10 and sheet[1, 5, 0] == 20 and sheet[4, 1, 0] == 30
    assert sheet[4, 5, 0] == 255 and sheet[0, 0, 0] == 255  # the missing cell and the margin are white


def test_draw_box_scales_the_stored_pixel_box_and_labels_go_above_or_below() -> None:
    tile = np.zeros((12, 9, 3), np.uint8)
    boxed = draw_box(tile, (1, 1, 2, 2), scale=3, colour=(0, 255, 0), thickness=1)
    assert boxed[3, 3].tolist() == [0, 255, 0] and boxed[8, 8].tolist() == [0, 255, 0]
    assert boxed[5, 5].tolist() == [0, 0, 0] and not tile.any()  # inside untouched, input not modified
    above, below = labelled(tile, ["x"]), labelled(tile, ["x"], below=True)
    assert above.shape == below.shape == (12 + 22, 9, 3)
    assert not above[-12:].any() and not below[:12].any()


def test_reid_uses_occsim_only_for_the_store_schema_and_validation() -> None:
    allowed = {"occsim.store", "occsim.schema", "occsim.validation"}
    used = set()
    for path in (REPO / "reid").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "occsim":
                module = node.module if node.module != "occsim" else f"occsim.{node.names[0].name}"
                used.add((module, path.relative_to(REPO).as_posix()))
            elif isinstance(node, ast.Import):
                used.update((a.name, path.relative_to(REPO).as_posix()) for a in node.names if a.name.startswith("occsim"))
    assert {m for m, _ in used} <= allowed, sorted(used)
