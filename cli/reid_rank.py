"""`reid rank`: a few queries and their top-k gallery images as PNG rows (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module
from cli.reid_saliency import parse_ids
from reid.options import DEVICES, DISTANCE_CHOICES, GALLERY_CHOICES, METRIC_CHOICES


@click.command("rank", cls=OneLineCommand)
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to rank with, or a run folder (its best.pt, else last.pt). "
                   "Default: best.pt (else last.pt) of the newest run under runs/.")
@click.option("--query", default="clean", show_default=True, metavar="SET",
              help="Query set: clean or occluded:TYPE (e.g. occluded:mean); occluded or all take their union.")
@click.option("--ids", default=None, metavar="PID,PID",
              help="Query identities to show (the first query image of each in the set). Default: --n at random.")
@click.option("--n", "n", type=click.IntRange(min=1), default=5, show_default=True,
              help="Queries drawn at random (with --seed) among those with a match in the gallery.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Gallery images per query.")
@click.option("--gallery", type=click.Choice(GALLERY_CHOICES), default="clean", show_default=True)
@click.option("--distance", type=click.Choice(DISTANCE_CHOICES), default="global", show_default=True)
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default="euclidean", show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/rank"), show_default=True,
              help="Folder for the PNGs (one per query, plus rank_sheet.png).")
@force_option
@handle_bad_input
def rank_command(
    data: Path,
    checkpoint: Path | None,
    query: str,
    ids: str | None,
    n: int,
    seed: int,
    k: int,
    gallery: str,
    distance: str,
    metric: str,
    device: str,
    batch_size: int,
    out: Path,
    force: bool,
) -> None:
    """Query and its top-k gallery images after the protocol's removals (same identity and
    camera, junk): green border = match, red = miss. The ranking is the one the CMC sees."""
    from common.atomic import check_output_folder
    from reid.engine.runs import resolve_checkpoint
    from reid.rank import RANK_OUTPUTS, run_rank

    checkpoint = resolve_checkpoint(checkpoint)
    # Before the features are computed: an earlier run's figures need --force, the inputs are never written.
    check_output_folder(out, "rank figures", outputs=RANK_OUTPUTS, inputs=(data, checkpoint), force=force)
    paths = run_rank(
        checkpoint, data, out, query=query, n_queries=n, ids=parse_ids(ids), seed=seed, distance=distance,
        metric=metric, k=k, gallery=gallery, device=device, batch_size=batch_size, overwrite=force,
    )
    for path in paths:
        click.echo(str(path))


if __name__ == "__main__":
    run_module(rank_command, "cli.reid_rank")
