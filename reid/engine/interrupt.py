"""Ctrl-C during training: never in the middle of an optimiser step.

The trainer runs each step inside :meth:`InterruptGuard.critical`; a SIGINT that arrives
there is deferred until the step is complete, so the checkpoint written on interruption
never holds half-updated weights.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class InterruptGuard:
    """Turns SIGINT into KeyboardInterrupt, but never in the middle of an optimiser step.

    Inside :meth:`critical` a SIGINT is remembered and raised as KeyboardInterrupt when the
    block ends, so a checkpoint never holds half-updated weights. Outside the main thread
    (where signal handlers cannot be installed) it does nothing.
    """

    def __init__(self) -> None:
        self._critical = False
        self._pending = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self._critical:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
