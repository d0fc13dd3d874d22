"""Errors that the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class BadInputError(Exception):
    """Input the user can fix: a missing folder, a damaged file, a wrong option value.

    The message is one line that names the file (or option) and says what to do. The CLI
    prints it as ``error: <message>`` and exits with status 2; library callers can catch it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
