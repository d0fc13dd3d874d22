"""`reid search`: the nearest gallery images of each query, as JSON and PNG sheets (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module
from reid.options import DEVICES, METRIC_CHOICES, SEARCH_DISTANCES


@click.command("search", cls=OneLineCommand)
@click.option("--gallery", type=click.Path(path_type=Path), required=True, help="Features file made by `reid embed`.")
@click.option("--query", type=click.Path(path_type=Path), required=True,
              help="An image, a folder of images, a .txt list, or a features file made by `reid embed` "
                   "with the same checkpoint.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Results per query.")
@click.option("--distance", type=click.Choice(SEARCH_DISTANCES), default="global", show_default=True,
              help="global+local adds AlignedReID's aligned stripe distance (as `reid eval`).")
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default="euclidean", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint (or run folder: its best.pt, else last.pt) for image queries. Default: the one the "
                   "gallery was embedded with (checked by fingerprint).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Query images per forward pass.")
@click.option("--figures", type=click.IntRange(min=0), default=20, show_default=True,
              help="PNG rows for the first N queries (the JSON has every query).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/search"), show_default=True,
              help="Folder for search.json, query_NNNN.png and search_sheet.png.")
@force_option
@handle_bad_input
def search_command(gallery: Path, query: Path, top: int, distance: str, metric: str, checkpoint: Path | None,
                   device: str, batch_size: int, figures: int, out: Path, force: bool) -> None:
    """Exact search of a gallery of any size (read in blocks): ranked lists with distances and
    each query's predicted occlusion probability (none when the OBC head was not trained, alpha = 1),
    plus the sheets `reid rank` draws."""
    from reid.engine.runs import resolve_checkpoint
    from reid.inference.search import SearchConfig, run_search

    report = run_search(SearchConfig(
        gallery=gallery, query=query, out=out, top=top, distance=distance, metric=metric,
        checkpoint=resolve_checkpoint(checkpoint) if checkpoint is not None else None,
        device=device, batch_size=batch_size, figures=figures, force=force,
    ))
    click.echo(str(report.json_path))
    for path in report.figures:
        click.echo(str(path))


if __name__ == "__main__":
    run_module(search_command, "cli.reid_search")
