"""`reid eval`: evaluate a checkpoint on the frozen query/gallery splits (thin Click layer)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module
from cli.options import config_options, values_from_cli
from reid.engine.eval_config import EvalConfig

#: EvalConfig's fields that are `reid eval` options, in --help order.
EVAL_NAMES: tuple[str, ...] = ("data", "checkpoint", "queries", "gallery", "distance", "metric", "visibility", "rerank",
                               "flip", "device", "batch_size", "shortlist", "max_rank", "workers")


@click.command("eval", cls=OneLineCommand)
@config_options(EvalConfig, EVAL_NAMES)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results JSON; the CMC plot goes next to it as <name>_cmc.png. "
                   "Default: eval.json in the checkpoint's run folder.")
@force_option
@handle_bad_input
def eval_command(out: Path | None, force: bool, **options: Any) -> None:
    """Evaluate a checkpoint: clean and occluded queries against the gallery (Market-1501 protocol).

    Prints R1, R5, R10, mAP and mINP per query set, writes the JSON and a CMC-curve PNG.
    """
    from reid.engine.evaluator import run_eval
    from reid.engine.report import check_outputs, format_header, format_table, write_outputs
    from reid.engine.runs import EVAL_JSON, resolve_checkpoint

    config = EvalConfig(**values_from_cli(EvalConfig, EVAL_NAMES, options))  # checks the options first
    checkpoint = resolve_checkpoint(config.checkpoint)  # the header printed below names it
    config = replace(config, checkpoint=checkpoint)
    inputs = (config.data, checkpoint)  # never written over, even with --force
    json_out, _ = check_outputs(out if out is not None else checkpoint.parent / EVAL_JSON, inputs, force)  # before work
    report = run_eval(config)
    json_path, png_path = write_outputs(report, json_out, inputs, force)
    click.echo(format_header(report))
    click.echo(format_table(report))
    click.echo(f"wrote {json_path} and {png_path}", err=True)


if __name__ == "__main__":
    run_module(eval_command, "cli.reid_eval")
