"""The spool of ``occsim generate``: a ring of slot files through which the worker processes
hand the pixels of each chunk to the one writer, and the sweep of spools left by killed runs.

Sending a chunk's block (uint8 [1 + T, n, H, W, 3]: the clean images, then one slab per
occluder type) back through loky's pipe (pickle, copy, unpickle) costs more CPU than decoding
it. So the writer (:func:`open_spool`) makes a private folder ``occsim-spool-<pid>-*`` in
RAM-backed /dev/shm (else the temporary folder) holding ``n_slots`` slot files and a
``consumed`` counter (int64); the worker of chunk ``k`` waits (:func:`wait_for_slot`) until the
writer has consumed chunk ``k - n_slots``, writes the block into slot ``k % n_slots`` and sends
back only a flag; the writer maps the slot read-only (:meth:`Spool.read`) and bumps the counter
(:meth:`Spool.consumed`). A full folder (:class:`SlotFull`) sends that chunk through the pipe
instead. The folder is removed on the way out; after a SIGKILL the next run removes it
(:func:`remove_stale_spools`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from common.atomic import pid_alive

logger = logging.getLogger(__name__)

SPOOL_PREFIX = "occsim-spool-"
SPOOL_BUDGET = 256 * 2**20  # bytes of slot files beyond one chunk per worker (+2)
SLOT_WAIT_S = 600.0  # a writer that consumes nothing for this long is gone


@dataclass(frozen=True)
class Slot:
    """Where a worker leaves a chunk's pixels for the writer (see :class:`Spool`).

    Attributes:
        path: the slot's file, reused by every ``n_slots``-th chunk, so its pages stay
            allocated (writing into fresh tmpfs pages costs three times as much).
        counter: file holding the number of chunks the writer has consumed (int64).
        wait_for: the chunk may be written once the writer has consumed this many chunks,
            i.e. when the previous user of the slot is done with it.
        writer_pid: the writer's process, the workers' parent.
    """

    path: str
    counter: str
    wait_for: int
    writer_pid: int


def wait_for_slot(slot: Slot) -> None:
    """Block until the writer is done with the slot's previous chunk.

    Raises RuntimeError if the writer process is gone (killed: this worker was orphaned) or
    consumed nothing for :data:`SLOT_WAIT_S`, so that a worker never outlives its run.
    """
    if slot.wait_for <= 0:
        return
    deadline = time.monotonic() + SLOT_WAIT_S
    fd = os.open(slot.counter, os.O_RDONLY)
    try:
        while int.from_bytes(os.pread(fd, 8, 0), "little") < slot.wait_for:
            if os.getppid() != slot.writer_pid:  # loky workers are the writer's children
                raise RuntimeError("the writer process is gone")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the writer consumed no chunk for {SLOT_WAIT_S:.0f} s")
            time.sleep(0.001)
    finally:
        os.close(fd)


class SlotFull(Exception):
    """The spool folder ran out of room: the chunk goes back through the pipe instead."""


class Spool:
    """A ring of slot files through which the workers hand pixels to the writer.

    Lives in a private folder of RAM-backed /dev/shm when it has room (else of the temporary
    folder), removed on the way out; folders left by a killed run are removed the next time.
    Chunk ``k`` goes to slot ``k % n_slots`` once the writer has consumed chunk
    ``k - n_slots`` (:func:`wait_for_slot`): joblib dispatches tasks without waiting for the
    consumer, so this is what bounds the pixels in flight to ``n_slots`` chunks.
    """

    def __init__(self, folder: str, n_slots: int) -> None:
        self.folder, self.n_slots = folder, n_slots
        self.counter = os.path.join(self.folder, "consumed")
        self._counter_fd = os.open(self.counter, os.O_RDWR | os.O_CREAT, 0o600)
        self.consumed(0)

    def slot(self, k: int) -> Slot:
        return Slot(os.path.join(self.folder, f"slot{k % self.n_slots}.raw"), self.counter,
                    k - self.n_slots + 1, os.getpid())

    def read(self, k: int, shape: tuple[int, ...]) -> np.ndarray:
        """Chunk ``k``'s block, mapped read-only from its slot file (valid until :meth:`consumed`)."""
        return np.memmap(self.slot(k).path, dtype=np.uint8, mode="r", shape=shape)

    def consumed(self, count: int) -> None:
        """Tell the workers that the first ``count`` chunks are written (their slots are free)."""
        os.pwrite(self._counter_fd, int(count).to_bytes(8, "little"), 0)

    def close(self) -> None:
        os.close(self._counter_fd)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def open_spool(n_workers: int, chunk_bytes: int) -> Iterator[Spool | None]:
    """A :class:`Spool` for ``n_workers`` workers and chunks of ``chunk_bytes`` pixels, or
    None (the pixels go through the pipe) in-process or when no folder has room."""
    if n_workers <= 1:
        yield None
        return
    n_slots = max(n_workers + 2, min(2 * n_workers + 2, SPOOL_BUDGET // max(1, chunk_bytes)))
    folder = None
    for base in ("/dev/shm", tempfile.gettempdir()):
        with contextlib.suppress(OSError):
            remove_stale_spools(base)
            free = os.statvfs(base)
            if free.f_bavail * free.f_frsize > 2 * n_slots * chunk_bytes:  # keep room for others
                folder = tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=base)
                break
    if folder is None:
        logger.debug("no room for a %d-slot spool: pixels go through the pipe", n_slots)
        yield None
        return
    spool = Spool(folder, n_slots)
    try:
        yield spool
    finally:
        spool.close()


def remove_stale_spools(base: str) -> None:
    """Remove the spool folders of runs whose process is gone (killed with SIGKILL)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid = name[len(SPOOL_PREFIX):].split("-", 1)[0] if name.startswith(SPOOL_PREFIX) else ""
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
