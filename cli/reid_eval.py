"""`reid eval`: evaluate a checkpoint on the frozen query/gallery splits (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module, split_commas
from common.errors import BadInputError
from reid.options import DEVICES, DISTANCE_CHOICES, GALLERY_CHOICES, METRIC_CHOICES


def _split_queries(values: tuple[str, ...]) -> tuple[str, ...]:
    """--query may be repeated and/or hold comma lists: ("clean,occluded:mean", "all")."""
    return split_commas(*values) or ("all",)


@click.command("eval", cls=OneLineCommand)
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to evaluate, or a run folder (its best.pt, else last.pt). "
                   "Default: best.pt (else last.pt) of the newest run under runs/.")
@click.option("--query", "queries", multiple=True, metavar="SET",
              help="Query set: clean, occluded (one row per occluder type in the file), occluded:TYPE "
                   "(e.g. occluded:mean) or all (clean + every occluded type). Repeatable or comma-separated. "
                   "Default: all.")
@click.option("--gallery", type=click.Choice(GALLERY_CHOICES), default="clean", show_default=True,
              help="clean: the clean gallery rows (the standard setting); all: every gallery row "
                   "(differs only for files made with --occlude-gallery).")
@click.option("--distance", type=click.Choice(DISTANCE_CHOICES), default="global",
              show_default=True,
              help="Retrieval distance. AlignedReID retrieves with the global feature alone by default (the "
                   "aligned local branch mainly helps training); local is the aligned stripe distance and "
                   "global+local their sum.")
@click.option("--metric", type=click.Choice(METRIC_CHOICES), default="euclidean", show_default=True,
              help="Distance on the global feature.")
@click.option("--visibility", type=click.Choice(["auto", "on", "off", "both"]), default="auto", show_default=True,
              help="Visibility-weighted aligned distance (models trained with --visibility-weight): stripes that "
                   "either image predicts hidden weigh less. auto: on when the checkpoint has a visibility head and "
                   "--distance is local or global+local (without --shortlist), else off; both: every query set "
                   "twice, the weighted rows named SET+vis.")
@click.option("--rerank", is_flag=True, help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")
@click.option("--flip", is_flag=True, help="Average each image's features with those of its mirror image.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--shortlist", type=click.IntRange(min=1), default=None, metavar="K",
              help="With --distance global+local: aligned distance only for each query's K nearest gallery "
                   "images by global distance (for galleries too large for the full matrix).")
@click.option("--max-rank", type=click.IntRange(min=1), default=50, show_default=True, help="Length of the CMC curve.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Data-loader worker processes.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results JSON; the CMC plot goes next to it as <name>_cmc.png. "
                   "Default: eval.json in the checkpoint's run folder.")
@force_option
@handle_bad_input
def eval_command(
    data: Path,
    checkpoint: Path | None,
    queries: tuple[str, ...],
    gallery: str,
    distance: str,
    metric: str,
    visibility: str,
    rerank: bool,
    flip: bool,
    device: str,
    batch_size: int,
    shortlist: int | None,
    max_rank: int,
    workers: int,
    out: Path | None,
    force: bool,
) -> None:
    """Evaluate a checkpoint: clean and occluded queries against the gallery (Market-1501 protocol).

    Prints R1, R5, R10, mAP and mINP per query set, writes the JSON and a CMC-curve PNG.
    """
    from reid.engine.evaluator import EvalConfig, run_eval
    from reid.engine.report import check_outputs, format_header, format_table, write_outputs
    from reid.engine.runs import EVAL_JSON, resolve_checkpoint

    checkpoint = resolve_checkpoint(checkpoint)  # the header printed below names it
    if shortlist is not None and distance != "global+local":
        raise BadInputError("--shortlist: only applies to --distance global+local; drop it or change --distance")
    config = EvalConfig(
        data=data,
        checkpoint=checkpoint,
        queries=_split_queries(queries),
        gallery=gallery,  # type: ignore[arg-type]
        distance=distance,  # type: ignore[arg-type]
        metric=metric,  # type: ignore[arg-type]
        rerank=rerank,
        device=device,
        flip=flip,
        batch_size=batch_size,
        max_rank=max_rank,
        shortlist=shortlist,
        workers=workers,
        visibility=visibility,
    )
    inputs = (data, checkpoint)  # never written over, even with --force
    json_out, _ = check_outputs(out if out is not None else checkpoint.parent / EVAL_JSON, inputs, force)  # before work
    report = run_eval(config)
    json_path, png_path = write_outputs(report, json_out, inputs, force)
    click.echo(format_header(report))
    click.echo(format_table(report))
    click.echo(f"wrote {json_path} and {png_path}", err=True)


if __name__ == "__main__":
    run_module(eval_command, "cli.reid_eval")
