"""`reid saliency`: Grad-CAM maps of one or more checkpoints on occluded queries (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, parse_numbers, run_module
from common.errors import BadInputError
from reid.options import DEVICES


def parse_ids(value: str | None) -> list[int] | None:
    """"12,34" -> [12, 34]; None stays None."""
    if value is None:
        return None
    ids = list(parse_numbers(value, "--ids", int, "identity numbers", "12,34"))
    if not ids:
        raise BadInputError(f"--ids {value!r}: no identity given; e.g. --ids 12,34")
    return ids


@click.command("saliency", cls=OneLineCommand)
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/occluded.h5"), show_default=True,
              help="The occluded-reid HDF5 file made by `occsim generate`.")
@click.option("--checkpoint", "checkpoints", type=click.Path(path_type=Path), multiple=True,
              help="A checkpoint (or run folder: its best.pt, else last.pt) to explain; repeat for several models "
                   "(e.g. the baseline, then the OBC model). "
                   "Default: the newest run under runs/.")
@click.option("--name", "names", multiple=True, help="Label per --checkpoint, in the same order. Default: run folder names.")
@click.option("--ids", default=None, metavar="PID,PID",
              help="Query identities to show (the first occluded image of each). Default: --n drawn at random.")
@click.option("--n", "n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Identities drawn at random (with --seed) when --ids is not given.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--type", "occ_type", default="mean", show_default=True, help="Occluder type of the queries (mean, black, random, pedestrian).")
@click.option("--target", type=click.Choice(["similarity", "obc"]), default="similarity", show_default=True,
              help="similarity: cosine similarity of the occluded image's embedding to its clean original's; "
                   "obc: the OBC head's occluded logit (a model whose head was not trained, alpha = 1, is marked so).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--figures", type=click.IntRange(min=0), default=16, show_default=True,
              help="Identities drawn (a PNG each and a row of the contact sheet); the share inside the box is "
                   "averaged over all the queries, drawn or not, so --n 500 --figures 8 measures 500 and draws 8.")
@click.option("--scale", type=click.IntRange(min=1, max=8), default=3, show_default=True, help="Image upscaling in the figures.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/saliency"), show_default=True,
              help="Folder for the per-identity PNGs, the contact sheet and box_mass.json.")
@force_option
@handle_bad_input
def saliency_command(
    data: Path,
    checkpoints: tuple[Path, ...],
    names: tuple[str, ...],
    ids: str | None,
    n: int,
    seed: int,
    occ_type: str,
    target: str,
    device: str,
    batch_size: int,
    figures: int,
    scale: int,
    out: Path,
    force: bool,
) -> None:
    """Grad-CAM (Figure 2 of the paper): clean image, occluded copy, and each model's saliency on
    the occluded copy, with the occlusion box; prints the share of saliency inside the box."""
    from common.atomic import check_output_folder
    from reid.engine.runs import resolve_checkpoint
    from reid.saliency import format_box_mass_table, run_saliency
    from reid.saliency.run import SALIENCY_OUTPUTS

    paths = [resolve_checkpoint(path) for path in checkpoints] or [resolve_checkpoint(None)]
    # Before the features are computed: an earlier run's figures need --force, the inputs are never written.
    check_output_folder(out, "saliency figures", outputs=SALIENCY_OUTPUTS, inputs=(data, *paths), force=force)
    report = run_saliency(
        data, paths, out, names=names or None, ids=parse_ids(ids), n=n, seed=seed, occ_type=occ_type,
        target=target, device=device, batch_size=batch_size, scale=scale, overwrite=force, max_figures=figures,
    )
    num = report.summary["num_queries"]
    click.echo(f"share of Grad-CAM mass inside the occlusion box ({num} occluded:{occ_type} queries, target {target}):")
    click.echo(format_box_mass_table(report.summary))
    if report.figures:
        click.echo(f"wrote {len(report.figures) - 1} identity figures, {report.figures[-1]} and {report.json_path}", err=True)
    else:
        click.echo(f"wrote {report.json_path} (no figures: --figures 0)", err=True)


if __name__ == "__main__":
    run_module(saliency_command, "cli.reid_saliency")
