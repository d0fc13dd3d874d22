"""Atomic writes: the old content or the whole new content, never a part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.atomic import atomic_write_bytes, atomic_write_json
from common.errors import BadInputError


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    monkeypatch.setattr("os.replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_unwritable_folder_is_a_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInputError, match="file: is a file, so the folder for the figure cannot be made"):
        atomic_write_bytes(blocker / "sub" / "a.png", b"png", "figure")
