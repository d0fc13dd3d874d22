"""The configuration of ``reid embed`` (:class:`EmbedConfig`), torch-free.

Each field declares its option once (:class:`common.options.Option` in the field's metadata);
``cli/reid_embed.py`` derives its Click options from them. Importing this module loads no
torch, so ``reid embed --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.atomic import check_output
from common.errors import BadInputError
from common.options import FORCE, Option, comma_text, comma_words, option_of, path_value, validate_options
from occsim.schema import SPLITS
from reid.engine.config import TrainConfig

#: Where ``reid embed`` runs the network (:mod:`reid.inference.backends`).
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class EmbedConfig:
    """Options of ``reid embed`` (see each field's help). ``checkpoint`` is a checkpoint file
    (the command resolves a run folder first); ``chunk_rows`` (not a command-line option) is
    the images per spool chunk, rounded up to whole batches: the most work a kill can lose."""

    src: Path = Option(None, "A folder of crops (walked recursively; any format OpenCV reads), a .txt list (one path "
                             "a line, relative to the list), one image, or an occluded-reid .h5 file.",
                       metavar="PATH", parse=path_value, required=True).field()
    out: Path = Option(None, "Features file to write (.h5).", metavar="PATH", parse=path_value,
                       required=True).field()
    checkpoint: Path | None = Option(
        None, "Checkpoint to embed with, or a run folder (its best.pt, else last.pt). Default: best.pt (else "
              "last.pt) of the newest run under runs/.", metavar="PATH", parse=path_value).field()
    splits: tuple[str, ...] = Option(SPLITS, "For an .h5 --src: the splits to embed, in this order.", cli="--split",
                                     metavar="SPLIT,SPLIT", text=comma_text, parse=comma_words).field()
    flip: bool = Option(False, "Average with the mirrored image's features.", flag=True).field()
    local: bool = Option(True, "Also store the stripe features (needed by `reid search --distance global+local`).",
                         flag=True).field()
    device: str = option_of(TrainConfig, "device").field()
    backend: str = Option(
        "auto", "Runtime of the network: onnxruntime (CPU; the `reid export` graph, checked against PyTorch) or "
                "torch. auto: onnxruntime on the CPU when onnx and onnxruntime are installed and the checkpoint "
                "exports, else torch; a --resume keeps the interrupted run's backend. One log line says which.",
        choices=BACKENDS).field()
    batch_size: int = Option(64, "Images per forward pass.", low=1).field()
    workers: int = Option(0, "Processes decoding images (0: in the main process).", low=0).field()
    skip_bad: bool = Option(False, "List and skip unreadable images instead of stopping at the first.",
                            flag=True).field()
    resume: bool = Option(False, "Continue an interrupted run: the images already embedded are kept, the rest "
                                 "computed. An existing --out still needs --force (the run writes it anew).",
                          flag=True).field()
    force: bool = FORCE.field()
    chunk_rows: int = Option(4096, cli="", low=1).field()

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        validate_options(self)

    def validate(self) -> None:
        """The checks that look at the file system: an output that is a folder, exists (without
        ``force``) or is one of the inputs."""
        if Path(self.out).is_dir():
            raise BadInputError(f"--out {self.out}: is a folder; give the name of the .h5 file to write")
        check_output(self.out, (self.src, self.checkpoint), self.force, "features file")

    @property
    def batches_per_chunk(self) -> int:
        return max(1, -(-self.chunk_rows // self.batch_size))
