"""Errors that the command line turns into a one-line message and exit status 2."""

from __future__ import annotations

import re


class BadInputError(Exception):
    """Input the user can fix: a missing folder, a damaged file, a wrong option value.

    The message is one line that names the file (or option) and says what to do. The CLI
    prints it as ``error: <message>`` and exits with status 2; library callers can catch it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(_worker_message(str(message)).split()))


def _worker_message(text: str) -> str:
    """The original message of an error re-raised by torch's DataLoader from a worker process.

    The DataLoader re-raises ``BadInputError(text)`` with ``text`` = "Caught BadInputError in
    DataLoader worker process 0. Original Traceback ...", the worker's traceback ending with
    the "common.errors.BadInputError: <message>" line; keep that one line.
    """
    caught = re.match(r"Caught (\w+) in DataLoader worker", text)
    if not caught or "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    marker = f"{caught.group(1)}: "
    return last.split(marker, 1)[1] if marker in last else last
