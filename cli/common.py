"""What every command shares: logging set-up, the bad-input policy (one line, exit 2), the
``--force`` option and the ``python -m cli.reid_*`` entry."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any, Callable, NoReturn, TypeVar

import click

from cli.options import click_option
from common.errors import BadInputError
from common.options import FORCE, parse_numbers, split_commas  # noqa: F401 (the last two: used by the commands)

F = TypeVar("F", bound=Callable[..., Any])

BAD_INPUT_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command


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


def run_with_one_line_errors(invoke: Callable[[], Any], prog_name: str) -> NoReturn:
    """Run a Click entry point in non-standalone mode (``invoke``) and exit the way every
    command here does: usage errors (a bad option value, an unknown option or command, a
    missing argument) are one ``error: <command>: <what>; see '<command> --help'`` line and exit
    status 2 instead of Click's usage block; Ctrl-C that reaches Click is one ``error:
    interrupted`` line and exit status 130. ``--help`` is unchanged."""
    try:
        result = invoke()
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare group: its help, as Click prints it
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else prog_name
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f"error: {command}: {message}; see '{command} --help'", err=True)
        sys.exit(BAD_INPUT_EXIT)
    except click.ClickException as exc:
        click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:  # Ctrl-C or end of input outside a command's own handling
        click.echo("error: interrupted", err=True)
        sys.exit(INTERRUPTED_EXIT)
    # Without standalone mode Click returns the command's value, or the code of an explicit
    # exit (--help: 0); the commands here return None on success.
    sys.exit(result if isinstance(result, int) else 0)


class _NamedUsageErrors:
    """Gives Click's parser errors the context they are raised without (``Option '--src'
    requires an argument`` comes with none), so that the one-line error names the real
    command (``reid embed``) instead of falling back to the group's function name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except click.UsageError as exc:
            if exc.ctx is None:
                exc.ctx = ctx
            raise


class OneLineCommand(_NamedUsageErrors, click.Command):
    """A command whose usage errors name it (``cls=`` of ``click.command``)."""


class OneLineErrorsGroup(_NamedUsageErrors, click.Group):
    """A Click group whose errors end as :func:`run_with_one_line_errors` says; its
    subcommands made with ``@group.command()`` are :class:`OneLineCommand`."""

    command_class = OneLineCommand

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        run_with_one_line_errors(
            lambda: super(OneLineErrorsGroup, self).main(args, prog_name, complete_var, standalone_mode=False,
                                                         **extra),
            prog_name or self.name or "")


def handle_interrupt(func: F) -> F:
    """Ctrl-C (or SIGTERM, which the generator turns into KeyboardInterrupt("signal 15")) ends
    a command whose outputs are written only when complete with one line and 128 + the signal
    number (130 for Ctrl-C), as a shell reports it, instead of a traceback or Click's "Aborted!"."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt as exc:
            words = str(exc).split()
            signum = int(words[-1]) if len(words) == 2 and words[0] == "signal" and words[1].isdigit() else 2
            click.echo(f"error: interrupted by signal {signum}; nothing was written (outputs appear only when "
                       "complete)", err=True)
            sys.exit(128 + signum)

    return wrapper  # type: ignore[return-value]


def force_option(func: F) -> F:
    """``--force``: overwrite existing outputs (never the command's own inputs; :data:`common.options.FORCE`)."""
    return click_option("force", FORCE)(func)


def version_option(func: F) -> F:
    """``--version``: the project's one version string (:data:`common.__version__`)."""
    from common import __version__

    return click.version_option(__version__, "--version", message="%(prog)s %(version)s")(func)


def run_module(command: click.Command, module: str) -> NoReturn:
    """``python -m <module>``: run ``command`` alone, with the one-line usage errors and exit
    statuses of the ``reid`` group and its own name (``python -m cli.reid_eval``) in them."""
    setup_logging(False)
    prog = f"python -m {module}"
    run_with_one_line_errors(lambda: command.main(prog_name=prog, standalone_mode=False), prog)
