"""`reid recipes`: the named recipes of `reid train --recipe`, and what each sets (thin Click layer)."""

from __future__ import annotations

import click

from cli.common import OneLineCommand, handle_bad_input, run_with_one_line_errors, setup_logging


@click.command("recipes", cls=OneLineCommand)
@handle_bad_input
def recipes_command() -> None:
    """List the named recipes of `reid train --recipe NAME[,NAME...]` and what each sets.

    Sizings (machine: backbone, input, schedule) come first, then the recipe grid's rows (what
    the network is shown and its losses). Apply several left to right, e.g.
    `reid train --recipe cpu,paper-obc`; options given on the command line override them.
    """
    from reid.recipes import describe_recipes

    for name, summary, sets in describe_recipes():
        click.echo(f"{name}\n  {summary}\n  sets: {sets}")


if __name__ == "__main__":
    setup_logging(False)
    prog = "python -m cli.reid_recipes"
    run_with_one_line_errors(lambda: recipes_command.main(prog_name=prog, standalone_mode=False), prog)
