"""`reid study GRID`: train and evaluate a named experiment grid into a report folder (thin layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import handle_bad_input, parse_numbers, split_commas
from cli.options import config_options
from cli.train_options import int_list, pop_training_kwargs, shared_training_options
from reid.options import DISTANCE_CHOICES
from reid.engine.config import TrainConfig


@click.command("study")
@click.argument("grid", type=click.Choice(["table1", "alpha", "occluders", "recipe"]))
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder. Default: reports/GRID.")
@click.option("--seeds", default="0", show_default=True,
              help="Comma-separated seeds: one run per cell and seed; the report gives mean ± std.")
@click.option("--alphas", default="1,0.9,0.8,0.6,0.4", show_default=True, help="alpha grid: the values to sweep.")
@click.option("--val-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=0.2,
              show_default=True, help="alpha grid: share of training identities held out for selection.")
@config_options(TrainConfig, ("alpha",), help={"alpha": "occluders grid: the alpha every cell trains with."})
@click.option("--saliency/--no-saliency", default=True, show_default=True,
              help="table1 grid: Grad-CAM sheets of the three models on occluded queries.")
@click.option("--test-data", "test_data", type=click.Path(path_type=Path), multiple=True, metavar="FILE",
              help="Another occluded-reid file every cell is also evaluated on (e.g. Occluded-REID for the "
                   "train-on-Market protocol); its query sets become extra report columns. Repeatable.")
@click.option("--cells", default="", metavar="NAMES",
              help="recipe grid: the rows to run, comma-separated (baseline, paper-obc, pairs-twin-free, "
                   "pairs-clean-anchors, augment, augment-ramp, augment-erasing, augment-visibility). Default: all.")
@click.option("--distance", type=click.Choice(DISTANCE_CHOICES), default="global",
              show_default=True, help="Retrieval distance every cell is evaluated with.")
@shared_training_options
@handle_bad_input
def study_command(grid: str, data: Path, out: Path | None, seeds: str, alphas: str, val_fraction: float,
                  alpha: float, saliency: bool, test_data: tuple[Path, ...], cells: str, distance: str,
                  **options: Any) -> None:
    """Run the experiment grid GRID and write report.md, results.json and figures.

    \b
    table1     AlignedReID on clean images (alpha 1), on clean + occluded images (alpha 1),
               and AlignedReID + OBC (alpha 0.8): the paper's Table 1 and the row it leaves open
    alpha      a sweep over alpha, selected on a validation split of the training identities
    occluders  train on each occluder type, test on every type
    recipe     the clean-only baseline, the paper's OBC recipe and the variants of how occlusion
               is shown (twin-free mining, clean anchors, occlusion as augmentation, ramp,
               Random Erasing, visibility head), each row with the same compute budget

    Finished cells are reused when the study is run again.
    """
    from common.atomic import check_output_folder
    from reid.study import StudyConfig, run_study

    training = pop_training_kwargs(options)
    base = TrainConfig(data=str(data), alpha=alpha, eval_every=0, **training)
    config = StudyConfig(
        grid=grid, data=data, out=out or Path("reports") / grid, base=base, seeds=int_list(seeds, "--seeds"),
        alphas=parse_numbers(alphas, "--alphas", float, "numbers", "1,0.8,0.6"), val_fraction=val_fraction, device=training["device"], saliency=saliency,
        test_data=tuple(test_data), cells=split_commas(cells), distance=distance,
    )
    check_output_folder(config.out, "study report")  # before any training
    report = run_study(config)
    click.echo(report.tables)
    click.echo(f"\n{report.trained} cell run(s) trained, {report.reused} reused; report: {report.report_md}")
