"""`reid study GRID`: train and evaluate a named experiment grid into a report folder (thin layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import OneLineCommand, handle_bad_input, run_module
from cli.options import config_options, values_from_cli
from cli.train_options import pop_training_kwargs, shared_training_options
from reid.engine.config import TrainConfig
from reid.study_config import GRIDS, StudyConfig

#: StudyConfig's fields that are `reid study` options.
STUDY_NAMES: tuple[str, ...] = ("seeds", "alphas", "val_fraction", "saliency", "saliency_queries", "cells",
                                "distance", "metric", "flip", "skip_busy", "reuse_from")


@click.command("study", cls=OneLineCommand)
@click.argument("grid", type=click.Choice(GRIDS))
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder. Default: reports/GRID.")
@config_options(StudyConfig, ("seeds", "alphas", "val_fraction"))
@config_options(TrainConfig, ("alpha",), help={"alpha": "occluders grid: the alpha every cell trains with."})
@config_options(StudyConfig, ("saliency", "saliency_queries"))
@click.option("--test-data", "test_data", type=click.Path(path_type=Path), multiple=True, metavar="FILE",
              help="Another occluded-reid file every cell is also evaluated on (e.g. Occluded-REID for the "
                   "train-on-Market protocol); its query sets become extra report columns. Repeatable.")
@config_options(StudyConfig, ("cells", "distance", "metric", "flip", "skip_busy", "reuse_from"))
@shared_training_options
@handle_bad_input
def study_command(grid: str, data: Path, out: Path | None, alpha: float, test_data: tuple[Path, ...],
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

    Finished cells are reused when the study is run again, and those of the --reuse-from
    reports that trained the same options, seed and file instead of training them here.
    The same study started in several shells splits its cells: each locks the cell it runs.
    """
    from common.atomic import check_output_folder
    from reid.study import run_study

    study = values_from_cli(StudyConfig, STUDY_NAMES, options)
    training = pop_training_kwargs(options)
    base = TrainConfig(data=str(data), alpha=alpha, eval_every=0, **training)
    config = StudyConfig(grid=grid, data=data, out=out or Path("reports") / grid, base=base,
                         device=training["device"], test_data=tuple(test_data), **study)
    check_output_folder(config.out, "study report")  # before any training
    report = run_study(config)
    if report.report_md is None:
        click.echo(f"{report.trained} cell run(s) trained, {report.reused} reused, {report.passed_over} passed over "
                   "(another process runs them); no report yet: run the study again once they are finished")
        return
    click.echo(report.tables)
    click.echo(f"\n{report.trained} cell run(s) trained, {report.reused} reused; report: {report.report_md}")


if __name__ == "__main__":
    run_module(study_command, "cli.reid_study")
