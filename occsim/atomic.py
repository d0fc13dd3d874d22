"""Write a file so that readers see the old content or the whole new content, never a part."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from occsim.errors import BadInputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    Raises:
        BadInputError: the folder cannot be created or written (names ``what`` and the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot write the {what} there ({exc.strerror or exc}); choose another --out") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, payload: Any, what: str = "JSON file", **dump_options: Any) -> Path:
    """:func:`atomic_write_bytes` of ``payload`` as indented JSON with a final newline."""
    text = json.dumps(payload, indent=2, **dump_options) + "\n"
    return atomic_write_bytes(path, text.encode(), what)
