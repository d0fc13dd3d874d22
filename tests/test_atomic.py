"""Atomic writes: the old content or the whole new content, never a part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.atomic import atomic_path, atomic_write_bytes, atomic_write_json, check_output
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


def test_atomic_path_names_what_it_could_not_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BadInputError, match=r"^.*file/f\.h5: cannot write the features there \(.*\); choose another --out$"):
        with atomic_path(blocker / "f.h5", "features"):
            pass
    with pytest.raises(OSError):  # without ``what``: the OSError itself, for callers that handle it
        with atomic_path(blocker / "f.h5"):
            pass
    assert blocker.read_text() == "x"


def test_check_output_refuses_an_existing_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "o.h5"
    out.write_bytes(b"keep")
    with pytest.raises(BadInputError, match=r"o\.h5: already exists; pass --force to overwrite it or choose another --out$"):
        check_output(out, what="HDF5 file")
    assert check_output(out, force=True, what="HDF5 file") == out and out.read_bytes() == b"keep"
    assert check_output(tmp_path / "new" / "o.h5") == tmp_path / "new" / "o.h5"
    assert not (tmp_path / "new").exists()  # checks create nothing


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
