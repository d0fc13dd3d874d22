"""`reid search`: the nearest gallery images of each query, as JSON and PNG sheets (thin Click layer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from cli.common import OneLineCommand, handle_bad_input, run_module
from cli.options import config_options, values_from_cli
from reid.inference.config import SearchConfig

#: SearchConfig's fields that are `reid search` options, in --help order.
SEARCH_NAMES: tuple[str, ...] = ("gallery", "query", "top", "distance", "metric", "checkpoint", "device", "batch_size",
                                 "figures", "out", "force")


@click.command("search", cls=OneLineCommand)
@config_options(SearchConfig, SEARCH_NAMES)
@handle_bad_input
def search_command(**options: Any) -> None:
    """Exact search of a gallery of any size (read in blocks): ranked lists with distances and
    each query's predicted occlusion probability (none when the OBC head was not trained, alpha = 1),
    plus the sheets `reid rank` draws."""
    from reid.engine.runs import resolve_checkpoint
    from reid.inference.search import run_search

    config = SearchConfig(**values_from_cli(SearchConfig, SEARCH_NAMES, options))
    if config.checkpoint is not None:
        config = replace(config, checkpoint=resolve_checkpoint(config.checkpoint))
    report = run_search(config)
    for query, results in report.top:
        click.echo(f"{query}: " + ", ".join(f"{path} ({distance:.3f})" for path, distance in results))
    if report.num_queries > len(report.top):
        click.echo(f"... {report.num_queries - len(report.top)} more queries in {report.json_path}")
    click.echo(str(report.json_path))
    for path in report.figures:
        click.echo(str(path))


if __name__ == "__main__":
    run_module(search_command, "cli.reid_search")
