"""`reid curves`: validation mAP of one or more runs against minutes of 2-core training (thin layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module, split_commas
from common.errors import BadInputError
from reid.engine.curves import MEASURES


@click.command("curves", cls=OneLineCommand)
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("learning_curve.png"), show_default=True,
              help="PNG to write.")
@click.option("--query", "queries", default="clean", show_default=True,
              help="Query sets to draw, comma-separated (as validated during training: clean, occluded:mean, ...).")
@click.option("--measure", type=click.Choice(MEASURES), default=MEASURES[0], show_default=True,
              help="What the y axis shows: validation mAP, or R1 (rank-1 of the CMC curve).")
@click.option("--label", "labels", multiple=True, help="Legend label per run (repeat; default: the folder name).")
@force_option
@handle_bad_input
def curves_command(runs: tuple[Path, ...], out: Path, queries: str, measure: str, labels: tuple[str, ...],
                   force: bool) -> None:
    """Plot the validation MEASURE of each run folder (its metrics.jsonl) against its training cost.

    The x axis is the run's CPU time over its training steps divided by 2, i.e. minutes of
    2-core training, which a busy machine hardly changes (wall-clock seconds x 2 for runs logged
    before CPU time was recorded). Runs need validated epochs (`reid train --eval-every N`).
    """
    from common.atomic import check_output
    from reid.engine.curves import load_run_records, plot_learning_curves, run_metrics_path

    if labels and len(labels) != len(runs):
        raise BadInputError(f"--label: give one per run ({len(runs)}), got {len(labels)}")
    check_output(out, [run_metrics_path(run) for run in runs], force, "learning curve")
    records = {label: load_run_records(run) for label, run in zip(labels or [r.name for r in runs], runs)}
    png = plot_learning_curves(records, out, queries=split_commas(queries), measure=measure, overwrite=force)
    click.echo(f"wrote {png}")


if __name__ == "__main__":
    run_module(curves_command, "cli.reid_curves")
