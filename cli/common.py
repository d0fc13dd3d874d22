"""What every command shares: logging set-up and the bad-input policy (one line, exit 2)."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, TypeVar

import click

from occsim.errors import BadInputError

F = TypeVar("F", bound=Callable[..., Any])

BAD_INPUT_EXIT = 2


def setup_logging(verbose: bool) -> None:
    """INFO by default, DEBUG with --verbose; one compact format for every module."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def handle_bad_input(func: F) -> F:
    """Turn :class:`BadInputError` into ``error: <message>`` on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadInputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(BAD_INPUT_EXIT)

    return wrapper  # type: ignore[return-value]


def parse_size(value: str, option: str = "--size") -> tuple[int, int]:
    """Parse "HxW" (e.g. "128x64") into (H, W)."""
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected HxW, e.g. 128x64") from None
    if height <= 0 or width <= 0:
        raise BadInputError(f"{option} {value!r}: both sides must be positive")
    return height, width


def split_commas(*values: str) -> tuple[str, ...]:
    """Flatten repeated and comma-separated option values: ("mean", "black,random") -> 3 items."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def parse_numbers(value: str, option: str, kind: type = int, what: str = "integers",
                  example: str = "0,1,2") -> tuple:
    """"0,1,2" -> (0, 1, 2) with ``kind`` (int or float); a bad item is a one-line BadInputError."""
    try:
        return tuple(kind(part) for part in split_commas(value))
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected comma-separated {what}, e.g. {example}") from None
