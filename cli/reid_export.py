"""`reid export`: a checkpoint as ONNX or TorchScript, checked against PyTorch (thin Click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import OneLineCommand, force_option, handle_bad_input, run_module


@click.command("export", cls=OneLineCommand)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint to export, or a run folder (its best.pt, else last.pt). "
                   "Default: best.pt (else last.pt) of the newest run under runs/.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True,
              help="onnx needs `pip install -e .[export]` (onnx, onnxruntime).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="File to write (e.g. model.onnx).")
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True,
              help="ONNX opset (at most what the installed PyTorch exports).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Largest difference to PyTorch accepted on the check batch, relative to each output's largest "
                   "value when that is above 1; above it nothing is written (exit 2).")
@force_option
@handle_bad_input
def export_command(checkpoint: Path | None, fmt: str, out: Path, opset: int, tolerance: float, force: bool) -> None:
    """Export for runtimes without PyTorch: input `images` float32 [batch, 3, H, W] normalised
    with the embedded mean/std; outputs `global`, `local`, `occlusion`; dynamic batch size."""
    from reid.engine.runs import resolve_checkpoint
    from reid.inference.export import ExportConfig, run_export

    report = run_export(ExportConfig(checkpoint=resolve_checkpoint(checkpoint), out=out, format=fmt, opset=opset,
                                     tolerance=tolerance, force=force))
    worst = max(report.max_abs_diff.values())
    click.echo(f"{report.out}: {report.format}, largest difference to PyTorch {worst:.2e} (of the output scale)")


if __name__ == "__main__":
    run_module(export_command, "cli.reid_export")
