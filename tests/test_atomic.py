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


def test_outputs_get_the_umask_permissions_not_mkstemps_0600(tmp_path: Path) -> None:
    import os
    import stat

    from common.atomic import atomic_write_json

    old = os.umask(0o022)
    try:
        out = tmp_path / "report.json"
        atomic_write_json(out, {"a": 1})
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.umask(0o077)
        private = tmp_path / "private.json"
        atomic_write_json(private, {"a": 1})
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)
