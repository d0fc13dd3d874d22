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

import click

from cli.common import handle_bad_input, parse_size, setup_logging
from occsim.errors import BadInputError

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT, the shell convention).
INTERRUPTED_EXIT = 130


def _default_name(arch: str, alpha: float, train_on: str) -> str:
    return f"{arch}-a{alpha:g}-{train_on}-{time.strftime('%Y%m%d-%H%M%S')}"


def _int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected comma-separated integers, e.g. 40,70") from None


@click.command("train")
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder. Default: runs/<name>.")
@click.option("--name", default=None, help="Run name for the default --out (default: ARCH-aALPHA-TRAINON-TIME).")
@click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101"]), default="resnet50",
              show_default=True, help="ResNet backbone (resnet18 for CPU runs).")
@click.option("--pretrained", default="imagenet", show_default=True, metavar="imagenet|none|PATH",
              help="Backbone initialisation: torchvision ImageNet weights (cache or download; random init with a "
                   "warning when offline), none, or a torchvision state-dict file.")
@click.option("--epochs", type=click.IntRange(min=1), default=120, show_default=True)
@click.option("--batch-p", type=click.IntRange(min=2), default=16, show_default=True,
              help="Identities per batch (per process under torchrun).")
@click.option("--batch-k", type=click.IntRange(min=1), default=4, show_default=True,
              help="Images per identity; with --train-on both each comes with its occluded copy.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=float, default=3.5e-4, show_default=True, help="Base learning rate.")
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--warmup-epochs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Linear warm-up from lr/100 to lr over this many epochs.")
@click.option("--schedule", type=click.Choice(["step", "cosine"]), default="step", show_default=True,
              help="After warm-up: x0.1 at each --milestones epoch, or cosine to 0.")
@click.option("--milestones", default="40,70", show_default=True, help="Step-schedule epochs, comma-separated.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=0.8, show_default=True,
              help="L = alpha * L_AlignedReID + (1 - alpha) * L_OBC; 1 = plain AlignedReID.")
@click.option("--margin", type=float, default=0.3, show_default=True, help="TriHard margin.")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True)
@click.option("--train-on", type=click.Choice(["clean", "occluded", "both"]), default="both", show_default=True,
              help="both: every batch holds clean images and their occluded copies.")
@click.option("--size", default="256x128", show_default=True, metavar="HxW", help="Network input size.")
@click.option("--last-stride", type=click.Choice(["1", "2"]), default="1", show_default=True)
@click.option("--random-erasing", is_flag=True, help="Random Erasing augmentation.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision (bf16, or fp16 with loss scaling); default on with CUDA, CUDA only.")
@click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True, help="Data-loader processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=0), default=10, show_default=True,
              help="Validate (R1, mAP on clean and occluded queries) every N epochs and after the last; 0 = never.")
@click.option("--eval-queries", default="clean,occluded", show_default=True,
              help="Validation query sets: clean, occluded, occluded:TYPE, all (comma-separated).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--force", is_flag=True, help="Delete the run in --out and start over.")
@click.option("--max-steps-per-epoch", type=click.IntRange(min=1), default=None,
              help="Cut every epoch to this many steps (tiny runs and demos).")
@handle_bad_input
def train_command(
    data: Path, out: Path | None, name: str | None, arch: str, pretrained: str, epochs: int, batch_p: int,
    batch_k: int, optimizer: str, lr: float, weight_decay: float, warmup_epochs: int, schedule: str,
    milestones: str, alpha: float, margin: float, label_smoothing: float, train_on: str, size: str,
    last_stride: str, random_erasing: bool, device: str, amp: bool | None, workers: int, seed: int,
    eval_every: int, eval_queries: str, resume: bool, force: bool, max_steps_per_epoch: int | None,
) -> None:
    """Train AlignedReID with the occlusion-classification (OBC) loss on the frozen splits.

    Writes runs/<name>/: config.json, metrics.jsonl, last.pt (every epoch), best.pt (best
    validation), curves.png. Ctrl-C saves last.pt; --resume continues from it.
    """
    from reid.engine.trainer import TrainConfig, train

    if os.environ.get("RANK", "0") != "0":
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 reports progress
    if out is None:
        if resume:
            raise BadInputError("--resume: give the run to continue with --out runs/NAME (or --name NAME)")
        out = Path("runs") / (name or _default_name(arch, alpha, train_on))
    config = TrainConfig(
        data=str(data), out=str(out), arch=arch,
        pretrained=None if pretrained.lower() == "none" else pretrained,
        epochs=epochs, batch_p=batch_p, batch_k=batch_k, optimizer=optimizer, lr=lr, weight_decay=weight_decay,
        warmup_epochs=warmup_epochs, schedule=schedule, milestones=_int_list(milestones, "--milestones"),
        alpha=alpha, margin=margin, label_smoothing=label_smoothing, train_on=train_on,
        input_size=parse_size(size), last_stride=int(last_stride), random_erasing=random_erasing, device=device,
        amp=amp, workers=workers, seed=seed, eval_every=eval_every,
        eval_queries=tuple(q.strip() for q in eval_queries.split(",") if q.strip()),
        resume=resume, force=force, max_steps_per_epoch=max_steps_per_epoch,
    )
    result = train(config)
    if os.environ.get("RANK", "0") != "0":
        return
    if result.interrupted:
        click.echo(result.message, err=True)
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
