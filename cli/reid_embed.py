"""`reid embed`: features of every image of a folder, list or .h5 file into a features file (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module, split_commas
from reid.options import DEVICES


@click.command("embed", cls=OneLineCommand)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to embed with, or a run folder (its best.pt, else last.pt). "
                   "Default: best.pt (else last.pt) of the newest run under runs/.")
@click.option("--src", type=click.Path(path_type=Path), required=True,
              help="A folder of crops (walked recursively; any format OpenCV reads), a .txt list (one path a line, "
                   "relative to the list), one image, or an occluded-reid .h5 file.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Features file to write (.h5).")
@click.option("--split", "splits", default="train,query,gallery", show_default=True, metavar="SPLIT,SPLIT",
              help="For an .h5 --src: the splits to embed, in this order.")
@click.option("--flip/--no-flip", default=False, show_default=True, help="Average with the mirrored image's features.")
@click.option("--local/--no-local", default=True, show_default=True,
              help="Also store the stripe features (needed by `reid search --distance global+local`).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--backend", type=click.Choice(("auto", "torch", "onnxruntime")), default="auto", show_default=True,
              help="Runtime of the network: onnxruntime (CPU; the `reid export` graph, checked against PyTorch) or "
                   "torch. auto: onnxruntime on the CPU when onnx and onnxruntime are installed and the checkpoint "
                   "exports, else torch; a --resume keeps the interrupted run's backend. One log line says which.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Processes decoding images (0: in the main process).")
@click.option("--skip-bad", is_flag=True, help="List and skip unreadable images instead of stopping at the first.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run: the images already embedded are kept, the rest computed. "
                   "An existing --out still needs --force (the run writes it anew).")
@force_option
@handle_bad_input
def embed_command(checkpoint: Path | None, src: Path, out: Path, splits: str, flip: bool, local: bool, device: str,
                  backend: str, batch_size: int, workers: int, skip_bad: bool, resume: bool, force: bool) -> None:
    """Embed images with a trained model: global [N, D], stripe [N, H, C] features and the
    predicted occlusion probability [N], with each image's relative path. Same input, same bytes."""
    from reid.engine.runs import resolve_checkpoint
    from reid.inference.embed import EmbedConfig, run_embed

    report = run_embed(EmbedConfig(
        checkpoint=resolve_checkpoint(checkpoint), src=src, out=out, batch_size=batch_size, workers=workers,
        device=device, flip=flip, local=local, skip_bad=skip_bad, resume=resume, force=force,
        splits=split_commas(splits), backend=backend,
    ))
    skipped = f", {len(report.skipped)} unreadable skipped" if report.skipped else ""
    resumed = f", {report.resumed_rows} kept from the interrupted run" if report.resumed_rows else ""
    click.echo(f"{report.out}: {report.rows} images{skipped}{resumed} ({report.images_per_second:.1f} images/s)")


if __name__ == "__main__":
    run_module(embed_command, "cli.reid_embed")
