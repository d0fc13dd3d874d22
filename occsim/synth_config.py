"""What ``occsim synth`` makes (:class:`SynthConfig`) and the options of the command, without
the drawing machinery.

Each field declares its option once (:class:`common.options.Option` in the field's metadata):
default, help, command-line name and bounds; the config checks itself against them when it is
built and ``occsim synth`` derives its Click options from them (:mod:`cli.options`). Importing
this module loads neither OpenCV nor joblib, so ``occsim synth --help`` stays fast.
:mod:`occsim.synth` re-exports :class:`SynthConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import BadInputError
from common.options import Option, options_of, path_value

#: ``occsim synth --out``, and where ``occsim generate`` makes the set when given no source.
SYNTH_OUT = Option(Path("data/synthetic-market"), "Folder to write (Market-1501 layout).", metavar="PATH",
                   parse=path_value)

# Market-1501's proportions: 2,798 junk and 3,819 distractors beside 13,115 gallery images
# of 750 test identities, i.e. about 0.21 and 0.29 of the test identities' images.
_JUNK_PER_TEST_IMAGE = 0.21
_DISTRACTORS_PER_TEST_IMAGE = 0.29


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise.

    ``n_junk`` and ``n_distractors`` default (None) to Market-1501's proportions of the test
    identities' images; read the resolved counts from :attr:`junk_count` and
    :attr:`distractor_count`. ``image_size`` is (H, W) of the written JPEGs.
    """

    n_ids: int = Option(300, "Identities (half train, half test).", cli="--ids", low=2, high=9998,
                        why="one train and one test identity at least").field()
    n_cameras: int = Option(6, "Cameras (one digit in Market-1501 names).", cli="--cameras", low=2, high=9,
                            why="Market names hold one camera digit").field()
    images_per_id: int = Option(12, "Images of each identity.", low=3, high=1000,
                                why="two cameras and one query image per identity need 3").field()
    image_size: tuple[int, int] = (128, 64)  # not a command-line option: Market-1501's crops
    seed: int = Option(0, "Seeds the identities, the cameras and every pixel.", low=0,
                       why="a seed is a non-negative integer").field()
    n_junk: int | None = Option(None, cli="", low=0, high=10**6, why="pass 0 for none").field()
    n_distractors: int | None = Option(None, cli="", low=0, high=10**6, why="pass 0 for none").field()

    def __post_init__(self) -> None:
        for name, option in options_of(self):  # "n_ids (--ids) = 1: must be in [2, 9998] (...)"
            value = getattr(self, name)
            if value is not None:
                label = name if option.cli == "" else f"{name} ({option.flag_name(name)})"
                _check_int(label, value, int(option.low), option.high, option.why)
        size = tuple(self.image_size)
        if len(size) != 2:
            raise BadInputError(f"image_size = {self.image_size!r}: expected (H, W); pass e.g. (128, 64)")
        _check_int("image_size height", size[0], 32, 1024, "Market's native height is 128")
        _check_int("image_size width", size[1], 16, 1024, "Market's native width is 64")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))

    @property
    def junk_count(self) -> int:
        """Number of junk (pid -1) images: ``n_junk`` or Market's proportion."""
        if self.n_junk is not None:
            return self.n_junk
        return max(1, round(_JUNK_PER_TEST_IMAGE * self._test_images_estimate()))

    @property
    def distractor_count(self) -> int:
        """Number of distractor (pid 0000) images: ``n_distractors`` or Market's proportion."""
        if self.n_distractors is not None:
            return self.n_distractors
        return max(1, round(_DISTRACTORS_PER_TEST_IMAGE * self._test_images_estimate()))

    def _test_images_estimate(self) -> int:
        return (self.n_ids // 2) * self.images_per_id


def _check_int(name: str, value: object, low: int, high: float | None, why: str) -> None:
    """A whole number in [low, high] (high None: unbounded), or a BadInputError naming ``name`` and ``why``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise BadInputError(f"{name} = {value!r}: not an integer; pass a whole number")
    if int(value) < low or (high is not None and int(value) > high):
        bounds = f"[{low}, {int(high)}]" if high is not None else f"[{low}, ∞)"
        raise BadInputError(f"{name} = {value}: must be in {bounds} ({why}); pass a value in range")
