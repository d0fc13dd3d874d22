"""The arguments of `occsim generate` (:class:`GenerateConfig`), without the generator's machinery.

Each field declares its option once (:class:`common.options.Option` in the field's metadata):
default, help, command-line name, choices and bounds. :meth:`GenerateConfig.validate` checks
the fields against them (plus the checks that involve several fields); ``occsim generate``
derives its Click options from them (:mod:`cli.options`). Importing this module loads numpy
but neither torch, OpenCV, h5py, joblib, the spool nor the HDF5 writer, so ``occsim generate
--help`` stays fast. :mod:`occsim.generate` re-exports the names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from common.errors import BadInputError
from common.options import (
    Option,
    check_image_size,
    comma_text,
    comma_words,
    parse_size,
    path_value,
    size_text,
    validate_options,
)
from common.workers import PROCESS_WORKERS
from occsim.occluders import OccluderParams
from occsim.schema import DEFAULT_IMAGE_SIZE, OCCLUDER_NAMES, SPLITS, occ_type_code
from occsim.sources import LAYOUT_NAMES, Source

DEFAULT_OUT = Path("data/occluded.h5")
RNG_SCHEME = "numpy.random.default_rng([seed, split_index, clean_row, type_code])"
#: CUHK03-NP's crop folders.
VARIANTS: tuple[str, ...] = ("detected", "labeled")
#: Fields that must be whole numbers (the bounds alone would let 1.5 or True through).
_WHOLE_NUMBERS: tuple[str, ...] = ("seed", "workers", "split_seed")


@dataclass(frozen=True)
class GenerateConfig:
    """Arguments of :func:`occsim.generate.generate`.

    Attributes:
        src: source folder (any layout of :mod:`occsim.sources`); None picks
            ``data/Market-1501-v15.09.15`` when it exists, else the built-in synthetic set
            in ``data/synthetic-market`` (made on the fly when missing).
        out: the HDF5 file to write.
        types: occluder names; each adds one occluded copy of every image of the occluded
            splits. Stored in code order whatever order they are given in.
        occluder: the occluders' parameters (patch side, random-box ranges).
        seed: seeds every per-image generator.
        workers: worker processes; 0 means all cores.
        occlude: splits that get occluded copies.
        occlude_gallery: also occlude the gallery (same as adding "gallery" to ``occlude``).
        image_size: stored (H, W).
        force: overwrite an existing ``out``.
        skip_bad: skip unreadable images (reported) instead of stopping at the first.
        chunk_size: images per worker task. The content and fingerprint do not depend on it,
            but the order in which HDF5 lays out the chunks does: keep the default for
            byte-identical files (it is deliberately not derived from ``workers``).
        progress: show a progress bar (when stderr is a terminal).
        layout: force the source layout (see :data:`occsim.sources.LAYOUT_NAMES`); None detects it.
        variant: CUHK03-NP's ``detected`` or ``labeled`` subfolder.
        split_seed: seeds the train/test identity split of a source without an official one (CUHK01).
    """

    src: Path | None = Option(
        None, "Source folder, layout detected (see --layout). Default: data/Market-1501-v15.09.15 if present, else "
              "the built-in synthetic set in data/synthetic-market (made if missing).",
        metavar="PATH", parse=path_value).field()
    out: Path = Option(DEFAULT_OUT, "The HDF5 file to write.", metavar="PATH", parse=path_value).field()
    types: tuple[str, ...] = Option(
        ("mean",), f"Occluder(s): {', '.join(OCCLUDER_NAMES)}; repeat or comma-separate. Each adds one occluded "
                   f"copy of every image of the occluded splits.",
        cli="--type", choices=OCCLUDER_NAMES, multiple=True, parse=comma_words).field()
    occluder: OccluderParams = OccluderParams()
    seed: int = Option(0, "Seeds every per-image generator.", low=0, why="must be a non-negative integer").field()
    workers: int = PROCESS_WORKERS.field()
    occlude: tuple[str, ...] = Option(("train", "query"), "Comma list of the splits that get occluded copies.",
                                      choices=SPLITS, text=comma_text, parse=comma_words).field()
    occlude_gallery: bool = Option(False, "Also occlude the gallery.", flag=True).field()
    image_size: tuple[int, int] = Option(DEFAULT_IMAGE_SIZE, "Stored image size HxW.", cli="--size", text=size_text,
                                         parse=parse_size).field()
    force: bool = Option(False, "Overwrite an existing --out.", flag=True).field()
    skip_bad: bool = Option(False, "Skip unreadable source images (each one reported).", flag=True).field()
    chunk_size: int = Option(256, cli="", low=1, why="must be positive").field()
    progress: bool = True
    layout: str | None = Option(None, f"Force the source layout: {', '.join(LAYOUT_NAMES)}.", metavar="NAME").field()
    variant: str | None = Option(None, "CUHK03-NP: which crops to read (default detected).", choices=VARIANTS).field()
    split_seed: int = Option(0, "Seeds the train/test identity split of sources without an official one (CUHK01).",
                             low=0, why="must be a non-negative integer").field()

    def validate(self) -> None:
        """Raise :class:`BadInputError` naming the option of the first invalid value: each field
        against its declared choices and bounds, then the checks that involve several fields."""
        for name in _WHOLE_NUMBERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise BadInputError(f"--{name.replace('_', '-')} {value!r}: must be a whole number")
        validate_options(self)
        self.occluder.validate()
        check_image_size(self.image_size, "--size")
        if self.occluded_splits:
            self.occluder.check_fits(self.image_size, self.ordered_types)

    @property
    def ordered_types(self) -> tuple[str, ...]:
        """``types`` without repeats, in code order (mean, black, random, pedestrian)."""
        return tuple(sorted(set(self.types), key=occ_type_code))

    @property
    def occluded_splits(self) -> tuple[str, ...]:
        """The splits that get occluded copies, in schema order."""
        wanted = set(self.occlude) | ({"gallery"} if self.occlude_gallery else set())
        return tuple(s for s in SPLITS if s in wanted)

    def generator_args(self, source: Source, skipped: Iterable[str] = ()) -> dict[str, Any]:
        """What the file records: everything that shapes its contents, nothing machine-specific.

        Leaves out ``workers``, ``force``, ``chunk_size`` and ``progress`` (they do not change
        the contents) and records the source folder's name, not its absolute path, so that the
        fingerprint is the same on every machine. ``source_args`` (what the reader decided: a
        CUHK01 split, a CUHK03-NP variant) appears only for the sources that have any, so the
        files of the other sources keep their fingerprints.
        """
        source_args = {"source_args": dict(source.args)} if source.args else {}
        return {
            "source_folder": source.name,
            "layout": source.layout,
            "types": list(self.ordered_types),
            "occlude": list(self.occluded_splits),
            **asdict(self.occluder),
            "seed": int(self.seed),
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "skipped": sorted(skipped),
            "rng": RNG_SCHEME,
            **source_args,
        }
