"""Click options derived from configuration fields (:class:`common.options.Option` metadata).

A command declares which fields it exposes; the option's name, default, help, choices, range
and flag-ness all come from the field, so a default or a range is written once, in the
config. Click checks the declared ranges and choices while parsing (its one-line usage
error); the config checks them again when it is built, for callers that skip the command line.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

import click

from common.options import Option, options_of

F = TypeVar("F", bound=Callable[..., Any])


def _number_type(option: Option) -> type | None:
    """int or float from the default (or, for a None default, the bounds); None if not a number."""
    sample = option.default if option.default is not None else (option.low if option.low is not None else option.high)
    if isinstance(sample, bool) or not isinstance(sample, (int, float)):
        return None
    return int if isinstance(sample, int) else float


def click_option(field_name: str, option: Option, help: str | None = None) -> Callable[[F], F]:
    """The ``click.option`` decorator of one field (``help`` replaces the declared one)."""
    flag = option.flag_name(field_name)
    text = help if help is not None else option.help
    if option.flag:
        if option.tristate:  # None = decided later (e.g. --amp: on with CUDA)
            return click.option(f"{flag}/--no-{flag[2:]}", field_name, default=None, help=text)
        if option.default:  # on by default: the way to turn it off is --no-NAME
            return click.option(f"{flag}/--no-{flag[2:]}", field_name, default=True, show_default=True, help=text)
        return click.option(flag, field_name, is_flag=True, default=False, help=text)
    kwargs: dict[str, Any] = {"help": text, "metavar": option.metavar}
    default = option.default
    if option.multiple:  # repeatable; each value may itself be a comma list, parsed by the config's parse
        kwargs.update(type=str, multiple=True)
        default = tuple(str(v) for v in default)
    elif option.parse is not None:  # text the config parses (sizes, comma lists, paths); None stays None
        kwargs["type"] = str
        default = None if default is None else (option.text or str)(default)
    elif option.choices is not None:
        kwargs["type"] = click.Choice([str(c) for c in option.choices])
        default = None if default is None else str(default)
    else:
        kind = _number_type(option)
        if kind is not None and (option.low is not None or option.high is not None):
            kind_range = click.IntRange if kind is int else click.FloatRange
            kwargs["type"] = kind_range(min=option.low, max=option.high, min_open=option.low_open,
                                        max_open=option.high_open)
        elif kind is not None:
            kwargs["type"] = kind
        elif option.text is not None:
            default = option.text(default)
    if option.required:  # no default at all: Click takes an explicit None for a given value
        return click.option(flag, field_name, required=True, **kwargs)
    kwargs["show_default"] = default not in (None, "")
    return click.option(flag, field_name, default=default, **kwargs)


def config_options(config_cls: type, names: Sequence[str], help: dict[str, str] | None = None) -> Callable[[F], F]:
    """Decorate a command with the options of ``config_cls``'s fields ``names``, in that order."""
    declared = dict(options_of(config_cls))
    missing = [n for n in names if n not in declared]
    if missing:
        raise KeyError(f"{config_cls.__name__} declares no option for {missing}")
    decorators = [click_option(name, declared[name], (help or {}).get(name)) for name in names]

    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def cli_names(config_cls: type, exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Fields of ``config_cls`` that are command-line options, in declaration order, less ``exclude``."""
    return tuple(name for name, option in options_of(config_cls) if option.cli != "" and name not in exclude)


def values_from_cli(config_cls: type, names: Sequence[str], raw: dict[str, Any]) -> dict[str, Any]:
    """Remove ``names`` from ``raw`` (Click's keyword arguments) and return them as the
    config's values: text parsed (sizes, comma lists), choices of numbers made numbers."""
    declared = dict(options_of(config_cls))
    out = {}
    for name in names:
        option, value = declared[name], raw.pop(name)
        if option.multiple:
            value = ",".join(value)
        if isinstance(value, str) and option.parse is not None:
            value = option.parse(value, option.flag_name(name))
        elif isinstance(value, str) and option.choices is not None:
            value = next(c for c in option.choices if str(c) == value)
        out[name] = value
    return out
