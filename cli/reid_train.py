"""`reid train`: AlignedReID + OBC training on the frozen splits (thin Click layer).

Several GPUs (or several CPU processes with gloo) under torchrun, same options::

    torchrun --nproc_per_node=4 -m cli.reid_train --data data/occluded.h5 --out runs/r50 ...
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.common import handle_bad_input, setup_logging, split_commas
from cli.train_options import pop_training_kwargs, shared_training_options
from common.errors import BadInputError

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT, the shell convention).
INTERRUPTED_EXIT = 130


def _default_name(arch: str, alpha: float, train_on: str) -> str:
    return f"{arch}-a{alpha:g}-{train_on}-{time.strftime('%Y%m%d-%H%M%S')}"


@click.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder. Default: runs/<name>.")
@click.option("--name", default=None, help="Run name for the default --out (default: ARCH-aALPHA-TRAINON-TIME).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.8, show_default=True,
              help="L = alpha * L_AlignedReID + (1 - alpha) * L_OBC; 1 = plain AlignedReID.")
@click.option("--train-on", type=click.Choice(["clean", "occluded", "both", "augment"]), default="both",
              show_default=True,
              help="both: every batch holds clean images and their occluded copies; augment: occlusion as a "
                   "per-image augmentation (each clean image read as one of its occluded copies with probability "
                   "--occlusion-p, no twin in the batch).")
@click.option("--train-occluders", default="", metavar="TYPES",
              help="Occluder types (comma-separated, e.g. mean,black) whose copies are trained on with "
                   "--train-on occluded|both|augment. Default: every type in the file.")
@shared_training_options
@click.option("--eval-every", type=click.IntRange(min=0), default=10, show_default=True,
              help="Validate (R1, mAP on clean and occluded queries) every N epochs and after the last; 0 = never.")
@click.option("--eval-queries", default="clean,occluded", show_default=True,
              help="Validation query sets: clean, occluded, occluded:TYPE, all (comma-separated).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--force", is_flag=True, help="Delete the run in --out and start over.")
@handle_bad_input
def train_command(
    data: Path, out: Path | None, name: str | None, alpha: float, train_on: str, train_occluders: str,
    eval_every: int, eval_queries: str, resume: bool, force: bool, **options: Any,
) -> None:
    """Train AlignedReID with the occlusion-classification (OBC) loss on the frozen splits.

    Writes runs/<name>/: config.json, metrics.jsonl, last.pt (every epoch), best.pt (best
    validation), curves.png. Ctrl-C saves last.pt; --resume continues from it.
    """
    from reid.engine.trainer import TrainConfig, train

    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 reports progress
    training = pop_training_kwargs(options)
    if out is None:
        if resume:
            raise BadInputError("--resume: give the run to continue with --out runs/NAME (or --name NAME)")
        out = Path("runs") / (name or _default_name(training["arch"], alpha, train_on))
    config = TrainConfig(
        data=str(data), out=str(out), alpha=alpha, train_on=train_on,
        train_occluders=split_commas(train_occluders),
        eval_every=eval_every, eval_queries=split_commas(eval_queries),
        resume=resume, force=force, **training,
    )
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
    train_command()
