"""The training options of `reid train` and `reid study`, derived from TrainConfig's fields.

Every default, help text, range and list of choices is declared once, on the field of
:class:`reid.engine.config.TrainConfig` (torch-free, so ``--help`` stays fast). `reid study`
applies the shared options to every cell of its grid; `reid train` adds the per-run options
(:data:`PER_RUN_NAMES`) and its own --data, --out and --name.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import click
from click.core import ParameterSource

from cli.options import cli_names, config_options, values_from_cli
from reid.engine.config import TrainConfig

F = TypeVar("F", bound=Callable[..., Any])

#: Options of one training run that `reid study` sets per cell instead.
PER_RUN_NAMES: tuple[str, ...] = ("alpha", "train_on", "train_occluders", "eval_every", "eval_queries", "resume", "force")
#: Options every run of `reid train` and every cell of `reid study` take.
SHARED_NAMES: tuple[str, ...] = cli_names(TrainConfig, exclude=PER_RUN_NAMES)


def shared_training_options(func: F) -> F:
    """Decorate a Click command with every option of :data:`SHARED_NAMES`."""
    return config_options(TrainConfig, SHARED_NAMES)(func)


def pop_training_kwargs(options: dict[str, Any], names: tuple[str, ...] = SHARED_NAMES) -> dict[str, Any]:
    """Remove the training options ``names`` from ``options`` and return them as TrainConfig keyword arguments."""
    return values_from_cli(TrainConfig, names, options)


def given_on_command_line(values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (Click parameter name -> value) that the user typed (or set in
    the environment), not Click's defaults: what overrides ``--recipe`` and ``--config``."""
    ctx = click.get_current_context()
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name: value for name, value in values.items() if ctx.get_parameter_source(name) in typed}
