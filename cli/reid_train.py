"""`reid train`: AlignedReID + OBC training on the frozen splits (thin Click layer).

Several GPUs (or several CPU processes with gloo) under torchrun, same options::

    torchrun --nproc_per_node=4 -m cli.reid_train --data data/occluded.h5 --out runs/r50 ...
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from cli.common import OneLineCommand, handle_bad_input, run_with_one_line_errors, setup_logging
from cli.options import config_options
from cli.train_options import (
    PER_RUN_NAMES,
    SHARED_NAMES,
    given_on_command_line,
    pop_training_kwargs,
    shared_training_options,
)
from common.errors import BadInputError
from common.options import comma_words
from reid.engine.config import TrainConfig, config_warnings
from reid.recipes import layered_config

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT, the shell convention).
INTERRUPTED_EXIT = 130


def _default_name(arch: str, alpha: float, train_on: str) -> str:
    return f"{arch}-a{alpha:g}-{train_on}-{time.strftime('%Y%m%d-%H%M%S')}"


@click.command("train", cls=OneLineCommand)
@click.option("--recipe", "recipes", default="", metavar="NAME[,NAME...]",
              help="Named recipes, applied left to right before --config and the options given here "
                   "(`reid recipes` lists them), e.g. cpu,paper-obc.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="JSON or YAML file of training options (a run's config.json works): after --recipe, before "
                   "the options given here.")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder. Default: runs/<name>.")
@click.option("--name", default=None, help="Run name for the default --out (default: ARCH-aALPHA-TRAINON-TIME).")
@config_options(TrainConfig, ("alpha", "train_on", "train_occluders"))
@shared_training_options
@config_options(TrainConfig, ("eval_every", "eval_queries", "resume", "force"))
@handle_bad_input
def train_command(recipes: str, config_file: Path | None, data: Path, out: Path | None, name: str | None,
                  **options: Any) -> None:
    """Train AlignedReID with the occlusion-classification (OBC) loss on the frozen splits.

    Writes runs/<name>/: config.json, metrics.jsonl, last.pt (every epoch), best.pt (best
    validation), curves.png. Ctrl-C saves last.pt; --resume continues from it.
    """
    from reid.engine.trainer import train

    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 reports progress
    training = pop_training_kwargs(options, SHARED_NAMES + PER_RUN_NAMES)
    given = given_on_command_line(training)
    if given_on_command_line({"data": data}) or config_file is None:
        given["data"] = str(data)
    config = layered_config(comma_words(recipes, "--recipe") if recipes else (), config_file, given)
    if out is None:
        if config.resume:
            raise BadInputError("--resume: give the run to continue with --out runs/NAME (or --name NAME)")
        out = Path("runs") / (name or _default_name(config.arch, config.alpha, config.train_on))
    config = replace(config, out=str(out))
    for warning in config_warnings(config):
        logging.getLogger("reid.train").warning(warning)
    result = train(config)
    if os.environ.get("RANK", "0") != "0":
        return
    if result.interrupted:
        # The trainer has logged where it stopped and how to resume.
        sys.exit(INTERRUPTED_EXIT)
    metrics = result.final_metrics
    summary = f"trained {result.epochs_completed} epoch(s) -> {result.run_dir}"
    if "total" in metrics:
        summary += f"; last epoch loss {metrics['total']:.4f}"
    if result.best_score is not None:
        summary += f"; best validation score {100 * result.best_score:.2f} (mean of clean and occluded mAP)"
    click.echo(summary)
    click.echo(f"checkpoints: {result.last_checkpoint}" + (f", {result.best_checkpoint}" if result.best_checkpoint else ""))


if __name__ == "__main__":
    # `python -m cli.reid_train ...` / `torchrun --nproc_per_node=N -m cli.reid_train ...`
    setup_logging(False)
    prog = "python -m cli.reid_train"
    run_with_one_line_errors(lambda: train_command.main(prog_name=prog, standalone_mode=False), prog)
