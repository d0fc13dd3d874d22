"""`reid export`: a checkpoint as ONNX or TorchScript, checked against PyTorch (thin Click layer)."""

from __future__ import annotations

from typing import Any

import click

from cli.common import OneLineCommand, handle_bad_input, run_module
from cli.options import config_options, values_from_cli
from reid.inference.config import ExportConfig

#: ExportConfig's fields are `reid export`'s options, in --help order.
EXPORT_NAMES: tuple[str, ...] = ("checkpoint", "format", "out", "opset", "tolerance", "force")


@click.command("export", cls=OneLineCommand)
@config_options(ExportConfig, EXPORT_NAMES)
@handle_bad_input
def export_command(**options: Any) -> None:
    """Export for runtimes without PyTorch: input `images` float32 [batch, 3, H, W] normalised
    with the embedded mean/std; outputs `global`, `local`, `occlusion`; dynamic batch size."""
    from reid.inference.export import run_export

    report = run_export(ExportConfig(**values_from_cli(ExportConfig, EXPORT_NAMES, options)))
    worst = max(report.max_abs_diff.values())
    click.echo(f"{report.out}: {report.format}, largest difference to PyTorch {worst:.2e} (of the output scale)")


if __name__ == "__main__":
    run_module(export_command, "cli.reid_export")
