"""The configurations of ``reid search`` (:class:`SearchConfig`) and ``reid export``
(:class:`ExportConfig`), torch-free.

Each field declares its option once (:class:`common.options.Option` in the field's metadata):
default, help, command-line name, choices and bounds. A config checks itself against them
when it is built; the commands derive their Click options from them (:mod:`cli.options`).
Importing this module loads neither torch nor numpy, so ``reid search --help`` and ``reid
export --help`` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.options import FORCE, Option, option_of, path_value, validate_options
from reid.engine.config import TrainConfig
from reid.options import METRIC, SEARCH_DISTANCES

#: What ``reid export`` writes.
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
#: The lowest ONNX opset exported (``reid export --opset``'s bound): the model's ops need it.
MIN_OPSET = 13


@dataclass(frozen=True)
class SearchConfig:
    """Options of ``reid search`` (see each field's help); ``force`` replaces the files of an
    earlier run in ``out`` (:data:`reid.inference.search.SEARCH_OUTPUTS`), never an input;
    ``block_rows`` (not a command-line option) is the gallery rows per block (None:
    :func:`reid.inference.search.default_block_rows`)."""

    gallery: Path = Option(None, "Features file made by `reid embed`.", metavar="PATH", parse=path_value,
                           required=True).field()
    query: Path = Option(None, "An image, a folder of images, a .txt list, or a features file made by `reid embed` "
                               "with the same checkpoint.", metavar="PATH", parse=path_value, required=True).field()
    out: Path = Option(Path("reports/search"), "Folder for search.json, query_NNNN.png and search_sheet.png.",
                       metavar="PATH", parse=path_value).field()
    top: int = Option(10, "Results per query.", low=1).field()
    distance: str = Option("global", "global+local adds AlignedReID's aligned stripe distance (as `reid eval`).",
                           choices=SEARCH_DISTANCES).field()
    metric: str = METRIC.field()
    checkpoint: Path | None = Option(
        None, "Checkpoint (or run folder: its best.pt, else last.pt) for image queries. Default: the one the gallery "
              "was embedded with (checked by fingerprint).", metavar="PATH", parse=path_value).field()
    device: str = option_of(TrainConfig, "device").field()
    batch_size: int = Option(64, "Query images per forward pass.", low=1).field()
    figures: int = Option(20, "PNG rows for the first N queries (the JSON has every query).", low=0).field()
    block_rows: int | None = Option(None, cli="", low=1).field()
    force: bool = FORCE.field()

    def __post_init__(self) -> None:
        validate_options(self)


@dataclass(frozen=True)
class ExportConfig:
    """Options of ``reid export``: ``format`` "onnx" or "torchscript", ``opset`` for ONNX (at
    most what the installed PyTorch exports, :func:`reid.inference.export.check_opset`),
    ``tolerance`` the largest difference to PyTorch accepted (see
    :func:`reid.inference.export.parity`), ``force`` to replace an existing ``out`` (never the
    checkpoint). ``checkpoint`` None: the newest run's (resolved by the command)."""

    out: Path = Option(None, "File to write (e.g. model.onnx).", metavar="PATH", parse=path_value,
                       required=True).field()
    checkpoint: Path | None = Option(
        None, "Checkpoint to export, or a run folder (its best.pt, else last.pt). "
              "Default: best.pt (else last.pt) of the newest run under runs/.",
        metavar="PATH", parse=path_value).field()
    format: str = Option("onnx", "onnx needs `pip install -e .[export]` (onnx, onnxruntime).", choices=FORMATS).field()
    opset: int = Option(17, "ONNX opset (at most what the installed PyTorch exports).", low=MIN_OPSET).field()
    tolerance: float = Option(1e-4, "Largest difference to PyTorch accepted on the check batch, relative to "
                                    "each output's largest value when that is above 1; above it nothing is "
                                    "written (exit 2).", low=0.0).field()
    force: bool = FORCE.field()

    def __post_init__(self) -> None:
        validate_options(self)
