"""`reid embed`: features of every image of a folder, list or .h5 file into a features file (thin Click layer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from cli.common import OneLineCommand, handle_bad_input, run_module
from cli.options import config_options, values_from_cli
from reid.inference.embed_config import EmbedConfig

#: EmbedConfig's fields that are `reid embed` options, in --help order.
EMBED_NAMES: tuple[str, ...] = ("checkpoint", "src", "out", "splits", "flip", "local", "device", "backend",
                                "batch_size", "workers", "skip_bad", "resume", "force")


@click.command("embed", cls=OneLineCommand)
@config_options(EmbedConfig, EMBED_NAMES)
@handle_bad_input
def embed_command(**options: Any) -> None:
    """Embed images with a trained model: global [N, D], stripe [N, H, C] features and the
    predicted occlusion probability [N] (NaN when the OBC head was not trained, alpha = 1),
    with each image's relative path. Same input, same bytes."""
    from reid.engine.runs import resolve_checkpoint
    from reid.inference.embed import run_embed

    config = EmbedConfig(**values_from_cli(EmbedConfig, EMBED_NAMES, options))
    report = run_embed(replace(config, checkpoint=resolve_checkpoint(config.checkpoint)))
    skipped = f", {len(report.skipped)} unreadable skipped" if report.skipped else ""
    resumed = f", {report.resumed_rows} kept from the interrupted run" if report.resumed_rows else ""
    click.echo(f"{report.out}: {report.rows} images{skipped}{resumed} ({report.images_per_second:.1f} images/s)")


if __name__ == "__main__":
    run_module(embed_command, "cli.reid_embed")
