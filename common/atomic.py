"""Write a file so that readers see the old content or the whole new content, never a part.

One family for every file the packages write: :func:`atomic_path` (a temporary name beside
the destination, renamed onto it when the block ends without error, removed otherwise) is the
mechanism; :func:`atomic_open` adds an open handle (and ``fsync`` for checkpoints);
:func:`atomic_write_bytes` / :func:`atomic_write_json` add the checks and the one-line error a
user can act on. Temporaries carry their writer's process id, so the next run sweeps those of
killed runs (:func:`sweep_leftovers`).

The overwrite policy of every command is :func:`check_output` (one file) and
:func:`check_output_folder` (the files a command writes into a folder): an existing output is
refused without ``--force``, an output that is one of the command's inputs always. The final
move is :func:`commit_file`: without ``--force`` it is no-clobber, so of two runs writing one
output at once only the first to finish succeeds.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Sequence

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


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once symbolic links and ``..`` are
    resolved, or (both existing) the same inode, which also catches hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_not_input(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "file",
                    option: str = "--out") -> Path:
    """The half of :func:`check_output` that ``--force`` never lifts: ``path`` must not be (or
    resolve to) one of ``inputs`` (None entries are skipped).

    Raises:
        BadInputError: naming the path, the input, the ``what`` and the ``option``.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise BadInputError(f"{path}: is also this command's input {source}, which writing the {what} would "
                                f"destroy (even with --force); choose another {option}")
    return path


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), force: bool = False,
                 what: str = "file", option: str = "--out") -> Path:
    """The one overwrite policy of every command, checked before any long work; creates nothing.

    * An output that is (or resolves to, through symbolic links, relative paths or hard links)
      one of the command's ``inputs`` is refused, even with ``force``: writing it would destroy
      what the command reads.
    * An existing output is refused unless ``force`` (the command's ``--force``); with it the
      new file replaces the old one only when complete (:class:`AtomicTarget`).
    * A folder where the file should go, or a folder that cannot be made or written, is refused.

    Writers that replace their own files as they go (a run's ``last.pt``) pass ``force=True``.

    Raises:
        BadInputError: one line naming the path, the ``what`` and the ``option`` (or ``--force``).
    """
    path = check_not_input(path, inputs, what, option)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, so the {what} cannot be written there; "
                            f"choose another {option} or move the folder away")
    if not force and (path.exists() or path.is_symlink()):
        raise BadInputError(f"{path}: already exists; pass --force to overwrite it or choose another {option}")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BadInputError(f"{existing}: is a file, so the folder for the {what} cannot be made; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"{existing}: not writable, so the {what} cannot be written under it; choose another {option}")
    return path


def check_output_folder(folder: str | os.PathLike, what: str = "outputs", option: str = "--out",
                        outputs: Sequence[str] = (), inputs: Iterable[str | os.PathLike | None] = (),
                        force: bool = False) -> Path:
    """Fail fast, before any long work, when files could not be written into ``folder``: it is a
    file, or it (or the folder that would hold it) cannot be written. Each existing file of
    ``folder`` that matches one of the glob patterns ``outputs`` (the names the command writes,
    e.g. ``rank_*.png``) is checked by :func:`check_output`: refused without ``force``, and
    refused when it is one of ``inputs``. Creates nothing.

    Raises:
        BadInputError: naming the folder (or the file), the ``what`` and the ``option`` to change.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: is a file, not a folder for the {what}; choose another {option}")
    check_output(folder / "x", what=what, option=option)
    inputs = tuple(inputs)
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in outputs):
                check_output(folder / name, inputs, force, what, option)
    return folder


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike, overwrite: bool = True,
                option: str = "--out") -> Path:
    """Move the finished temporary file ``tmp`` onto ``path``, atomically.

    ``overwrite``: ``os.replace`` (a file already at ``path`` is replaced; of two writers the last
    wins). Otherwise no-clobber: ``os.link`` makes ``path`` only if nothing is there, so of two
    writers of one output started at once exactly one succeeds; on a file system without hard
    links the name is claimed with ``O_CREAT | O_EXCL`` before the rename. ``tmp`` is gone after.

    Raises:
        BadInputError: (no ``overwrite``) ``path`` exists, e.g. written by another run meanwhile;
            ``tmp`` is left for the caller to discard.
    """
    tmp, path = Path(tmp), Path(path)
    if overwrite:
        os.replace(tmp, path)
        return path
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links here (some network or FUSE mounts): claim the name, then rename
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            os.replace(tmp, path)
            return path
    except FileExistsError:
        raise BadInputError(f"{path}: already exists, written by another run while this one worked (this run's "
                            f"output was discarded); pass --force to overwrite it or choose another {option}") from None
    tmp.unlink()
    return path


class AtomicTarget:
    """A temporary file beside ``path`` (:func:`temporary_beside`: created empty, those of
    killed writers swept; the folder is created) that :meth:`commit` moves onto ``path``
    (:func:`commit_file`: replacing a file there when ``overwrite``, else no-clobber) and
    :meth:`discard` removes. For writers whose end is not the end of one ``with`` block (the
    HDF5 store commits in ``finish``); others use :func:`atomic_path`.

    Raises:
        OSError: the folder or the temporary file cannot be made.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = True, option: str = "--out") -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.option = option
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = temporary_beside(self.path)
        os.close(fd)
        self.tmp = Path(tmp_name)

    def commit(self) -> Path:
        """Move the temporary file onto ``path`` (atomic on one file system; see :func:`commit_file`)."""
        return commit_file(self.tmp, self.path, self.overwrite, self.option)

    def discard(self) -> None:
        """Remove the temporary file (nothing when it was committed)."""
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str | None = None, option: str = "--out",
                overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (:class:`AtomicTarget`, the file exists and is
    empty) for the caller to write; it is moved onto ``path`` when the block ends without an
    exception and removed otherwise (KeyboardInterrupt included). The folder is created.
    Without ``overwrite`` the move fails when ``path`` exists by then (:func:`commit_file`).

    Raises:
        BadInputError: (given ``what``) the folder or the temporary file cannot be made; names
            the path, ``what`` and the ``option`` to change. Without ``overwrite``: ``path``
            appeared meanwhile.
        OSError: the same without ``what``, or the rename fails.
    """
    try:
        target = AtomicTarget(path, overwrite, option)
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file", option: str = "--out",
                       overwrite: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and move it into place; without
    ``overwrite`` an existing ``path`` is refused (:func:`check_output`, :func:`commit_file`).

    Raises:
        BadInputError: ``path`` is a folder, or its folder cannot be created or written (names
            ``what``, the path and the ``option`` to change), or (no ``overwrite``) it exists;
            nothing is left behind then.
    """
    path = check_output(path, force=overwrite, what=what, option=option)
    try:
        with atomic_path(path, option=option, overwrite=overwrite) as tmp, open(tmp, "wb") as handle:
            handle.write(data)
    except OSError as exc:  # a folder that appeared meanwhile, a full disk
        raise BadInputError(f"{path}: cannot write the {what} there ({exc.strerror or exc}); choose another {option}") from exc
    return path


def atomic_write_json(path: str | os.PathLike, payload: Any, what: str = "JSON file", overwrite: bool = True,
                      **dump_options: Any) -> Path:
    """:func:`atomic_write_bytes` of ``payload`` as indented JSON with a final newline."""
    text = json.dumps(payload, indent=2, **dump_options) + "\n"
    return atomic_write_bytes(path, text.encode(), what, overwrite=overwrite)
