"""One writer per folder: an advisory lock on the folder itself, held while a process writes there.

Two ``reid train --resume`` into one run folder, or two ``reid study`` shells training the same
cell, would each write the other's checkpoints (and ``--force`` would delete them mid-run). The
lock is ``flock`` on the folder's own descriptor: it adds no file to the folder, and the kernel
drops it when the process dies, so a killed run never leaves a stale lock behind. Where there is
no ``flock`` (Windows) folders are not locked: one writer per folder is then the user's care.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from common.errors import BadInputError


class FolderBusy(BadInputError):
    """Another process holds the folder's lock."""


class FolderLock:
    """An exclusive ``flock`` on a folder, taken once the folder exists.

    ``acquire`` locks it when it exists and does nothing when it does not (no process writes in
    a folder that is not there yet); call it again after creating the folder. ``release``
    (or leaving the ``with`` block) unlocks. The lock conflicts with every other holder,
    the same process's other ``FolderLock`` on the same folder included.

    Args:
        path: the folder.
        holder: what the other process is doing there, for the error ("training into this run folder").
        fix: what the user can do instead ("wait for it to finish or choose another --out").
    """

    def __init__(self, path: str | Path, holder: str, fix: str) -> None:
        self.path, self.holder, self.fix = Path(path), holder, fix
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: bool = False) -> bool:
        """Lock the folder if it exists and is not locked here yet; True when held afterwards
        (False also where the platform has no ``flock``).

        Args:
            wait: block until the other holder lets go, instead of raising.

        Raises:
            FolderBusy: another holder has it and ``wait`` is False.
        """
        if self._fd is not None:
            return True
        if fcntl is None or not self.path.is_dir():
            return False
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise FolderBusy(f"{self.path}: another process is {self.holder}; {self.fix}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:  # Ctrl-C while waiting
                os.close(fd)
                raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor of the open file drops the flock

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
