"""Write a file so that readers see the old content or the whole new content, never a part.

One family for every file the packages write: :func:`atomic_path` (a temporary name beside
the destination, renamed onto it when the block ends without error, removed otherwise) is the
mechanism; :func:`atomic_open` adds an open handle (and ``fsync`` for checkpoints);
:func:`atomic_write_bytes` / :func:`atomic_write_json` add the checks and the one-line error a
user can act on. Temporaries carry their writer's process id, so the next run sweeps those of
killed runs (:func:`sweep_leftovers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from common.errors import BadInputError

logger = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 only asks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_leftovers(folder: str | os.PathLike, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the files of ``folder`` whose name matches ``pattern`` and whose writer is dead.

    Temporary files carry their writer's process id (``pattern``'s first group); a run killed
    with SIGKILL cannot remove its own, so the next run that writes the same name does. (On a
    folder shared between machines a process id is only meaningful on the machine that wrote
    the file; keep concurrent runs on different machines from writing the same name.)

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        match = pattern.fullmatch(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            (folder / name).unlink()
            removed.append(folder / name)
            logger.info("removed %s, left by a killed run (process %s)", folder / name, match.group(1))
    return removed


def default_mode(directory: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file (0o666) or folder (0o777) under
    the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def temporary_beside(path: str | os.PathLike) -> tuple[int, str]:
    """Create ``.<name>.<pid>-<random>.tmp`` beside ``path`` for an atomic write, after removing
    those that killed writers of the same name left behind (:func:`sweep_leftovers`).

    The file gets the permissions a plain ``open`` would give it (``mkstemp`` makes it 0600,
    which the rename would carry over to the output, unreadable by the rest of a team).

    Returns:
        (open file descriptor, temporary path), as :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    sweep_leftovers(path.parent, re.compile(re.escape(f".{path.name}.") + r"(\d+)-[^/]*\.tmp"))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, default_mode())
    return fd, name


def check_output_file(path: str | os.PathLike, what: str = "file", option: str = "--out",
                      overwrite: bool = True) -> Path:
    """Fail fast, before any long work, when ``path`` could not be written: it is a folder, or
    the folder it goes in cannot be made or written, or (``overwrite=False``, a command without
    ``--force``) it exists. Creates nothing.

    Raises:
        BadInputError: naming the path, the ``what`` and the ``option`` to change.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise BadInputError(f"{path}: already exists; pass --force to overwrite it or choose another {option}")
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, so the {what} cannot be written there; "
                            f"choose another {option} or move the folder away")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInputError(f"{existing}: is a file, so the folder for the {what} cannot be made; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"{existing}: not writable, so the {what} cannot be written under it; choose another {option}")
    return path


def check_output_folder(folder: str | os.PathLike, what: str = "outputs", option: str = "--out") -> Path:
    """Fail fast, before any long work, when files could not be written into ``folder``: it is a
    file, or it (or the folder that would hold it) cannot be written. Creates nothing.

    Raises:
        BadInputError: naming the folder, the ``what`` and the ``option`` to change.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: is a file, not a folder for the {what}; choose another {option}")
    check_output_file(folder / "x", what, option)
    return folder


class AtomicTarget:
    """A temporary file beside ``path`` (:func:`temporary_beside`: created empty, those of
    killed writers swept; the folder is created) that :meth:`commit` renames onto ``path`` and
    :meth:`discard` removes. For writers whose end is not the end of one ``with`` block (the
    HDF5 store commits in ``finish``); others use :func:`atomic_path`.

    Raises:
        OSError: the folder or the temporary file cannot be made.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = temporary_beside(self.path)
        os.close(fd)
        self.tmp = Path(tmp_name)

    def commit(self) -> Path:
        """Rename the temporary file onto ``path`` (atomic on one file system)."""
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (nothing when it was committed)."""
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str | None = None, option: str = "--out") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (:class:`AtomicTarget`, the file exists and is
    empty) for the caller to write; it is renamed onto ``path`` when the block ends without an
    exception and removed otherwise (KeyboardInterrupt included). The folder is created.

    Raises:
        BadInputError: (given ``what``) the folder or the temporary file cannot be made; names
            the path, ``what`` and the ``option`` to change.
        OSError: the same without ``what``, or the rename fails.
    """
    try:
        target = AtomicTarget(path)
    except OSError as exc:
        if what is None:
            raise
        raise BadInputError(f"{path}: cannot write the {what} there ({exc.strerror or exc}); "
                            f"choose another {option}") from exc
    try:
        yield target.tmp
        target.commit()
    finally:
        target.discard()  # gone already after the rename


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", fsync: bool = False) -> Iterator[IO[Any]]:
    """:func:`atomic_path` with the temporary file open in ``mode``; ``fsync`` flushes it to the
    disk before the rename (checkpoints: a crash right after must not leave an empty file)."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file", option: str = "--out") -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    Raises:
        BadInputError: ``path`` is a folder, or its folder cannot be created or written (names
            ``what``, the path and the ``option`` to change); nothing is left behind then.
    """
    path = check_output_file(path, what, option)
    try:
        with atomic_open(path) as handle:
            handle.write(data)
    except OSError as exc:  # a folder that appeared meanwhile, a full disk
        raise BadInputError(f"{path}: cannot write the {what} there ({exc.strerror or exc}); choose another {option}") from exc
    return path


def atomic_write_json(path: str | os.PathLike, payload: Any, what: str = "JSON file", **dump_options: Any) -> Path:
    """:func:`atomic_write_bytes` of ``payload`` as indented JSON with a final newline."""
    text = json.dumps(payload, indent=2, **dump_options) + "\n"
    return atomic_write_bytes(path, text.encode(), what)
