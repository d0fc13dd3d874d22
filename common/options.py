"""Each option declared once: a configuration dataclass's field carries its default, help,
command-line name, choices and bounds; the config validates itself from them and the command
line derives its Click options from them (:mod:`cli.options`).

Torch-free and Click-free, so configs can be imported by ``--help`` without the heavy
packages::

    @dataclass(frozen=True)
    class LossConfig:
        alpha: float = ALPHA.field()          # ALPHA = Option(0.8, "L = ...", low=0.0, high=1.0)

        def __post_init__(self) -> None:
            validate_options(self)             # "--alpha 1.5: must be between 0 and 1 ..."

An :class:`Option` shared by two configs (``alpha`` by the loss and the training run) is one
module-level constant whose :meth:`Option.field` both use.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from common.errors import BadInputError

#: Key of a dataclass field's metadata that holds its :class:`Option`.
OPTION_KEY = "option"


@dataclass(frozen=True)
class Option:
    """How one configuration field is set and checked.

    Attributes:
        default: the field's default (also the command line's).
        help: one line for ``--help``.
        cli: the command-line name ("--stripes"); None = "--" + the field name with dashes;
            "" = not a command-line option (validated under the field's name).
        choices: the allowed values (strings, or ints shown as strings on the command line).
        low, high: bounds of a number (None = unbounded); ``low_open`` / ``high_open`` exclude them.
        note: appended to a range error, e.g. "(1 = plain AlignedReID)".
        why: replaces the generic range error's reason, e.g. "TriHard needs at least 2 identities per batch".
        metavar: the value's name in ``--help`` ("HxW").
        text: the default as the command line writes it (tuples, None); None = ``str``.
        parse: the command-line text to the field's value (sizes, lists); None = Click's type.
        flag: a boolean switch ("--x"); ``tristate`` makes it "--x/--no-x" with None meaning auto.
        multiple: the option may be repeated ("--type mean --type black,random"); the values are
            joined with commas before ``parse``. With ``choices``, a tuple value's every item is checked.
        required: the command line must give it; the field has no default (``default`` is unused).
    """

    default: Any
    help: str = ""
    cli: str | None = None
    choices: Sequence[Any] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""
    why: str = ""
    metavar: str | None = None
    text: Callable[[Any], str] | None = None
    parse: Callable[[str, str], Any] | None = None
    flag: bool = False
    tristate: bool = False
    multiple: bool = False
    required: bool = False

    def field(self, **overrides: Any) -> Any:
        """A dataclass field with this option's default, none when ``required`` (``overrides``
        replace attributes, e.g. help)."""
        option = dataclasses.replace(self, **overrides) if overrides else self
        if option.required:
            return dataclasses.field(metadata={OPTION_KEY: option})
        return dataclasses.field(default=option.default, metadata={OPTION_KEY: option})

    def flag_name(self, field_name: str) -> str:
        """"--name" on the command line; the field's name for options that have none."""
        if self.cli == "":
            return field_name
        return self.cli or "--" + field_name.replace("_", "-")

    def range_text(self) -> str:
        """"between 0 and 1", ">= 0", "> 0", "at least 2", "in [0, 1)"; "" when unbounded."""
        lo, hi = self.low, self.high
        if lo is None and hi is None:
            return ""
        if hi is None:
            if self.low_open:
                return f"> {lo:g}"
            return f"at least {lo:g}" if isinstance(lo, int) and lo >= 1 else f">= {lo:g}"
        if lo is None:
            return f"< {hi:g}" if self.high_open else f"<= {hi:g}"
        if not self.low_open and not self.high_open:
            return f"between {lo:g} and {hi:g}"
        return f"in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"

    def check(self, field_name: str, value: Any) -> None:
        """Raise :class:`BadInputError` naming the option when ``value`` is not allowed."""
        name = self.flag_name(field_name)
        if self.choices is not None and isinstance(value, (tuple, list)):  # a list option: every item one of the choices
            unknown = [item for item in value if item not in self.choices]
            if unknown:
                raise BadInputError(f"{name} {unknown[0]!r}: unknown; use one or more of "
                                    f"{', '.join(map(str, self.choices))}")
            return
        if self.choices is not None and value is not None and value not in self.choices:
            raise BadInputError(f"{name} {value!r}: use one of {', '.join(map(str, self.choices))}")
        if value is None or isinstance(value, bool) or (self.low is None and self.high is None):
            return
        number = float(value)
        inside = math.isfinite(number)
        if self.low is not None:
            inside = inside and (number > self.low if self.low_open else number >= self.low)
        if self.high is not None:
            inside = inside and (number < self.high if self.high_open else number <= self.high)
        if not inside:
            reason = self.why or f"must be {self.range_text()}" + (f" {self.note}" if self.note else "")
            raise BadInputError(f"{name} {value}: {reason}")


def options_of(config: Any) -> Iterator[tuple[str, Option]]:
    """(field name, :class:`Option`) of every field of a dataclass (class or instance) that has one."""
    for f in dataclasses.fields(config):
        option = f.metadata.get(OPTION_KEY)
        if option is not None:
            yield f.name, option


def option_of(config: Any, name: str) -> Option:
    """The :class:`Option` of field ``name`` of a dataclass (class or instance): how another
    config declares the same option without writing it twice (``option_of(TrainConfig, "workers").field()``).

    Raises:
        KeyError: the field has no :class:`Option`.
    """
    for field_name, option in options_of(config):
        if field_name == name:
            return option
    raise KeyError(f"{getattr(config, '__name__', type(config).__name__)} declares no option {name!r}")


def validate_options(config: Any) -> None:
    """Check every field of ``config`` against its :class:`Option` (choices, bounds, finiteness).

    Raises:
        BadInputError: the first field out of range, named as on the command line.
    """
    for name, option in options_of(config):
        option.check(name, getattr(config, name))


#: ``--force`` of every command that writes an output.
FORCE = Option(False, "Overwrite existing outputs (never one of the command's own inputs).", flag=True)


# ------------------------------------------------------- command-line text <-> values

#: The largest image side (stored or network input) any command accepts, in pixels: 32x
#: Market-1501's crops. Larger sizes only exhaust memory (an int16 box, a cv2 allocation).
MAX_IMAGE_SIDE = 4096


def check_image_size(size: Sequence[int], option: str = "--size") -> tuple[int, int]:
    """(H, W) of ``size`` when both sides are in 1..:data:`MAX_IMAGE_SIDE`.

    Raises:
        BadInputError: naming ``option``, the size and the bounds.
    """
    text = "x".join(str(v) for v in size)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in size):
        raise BadInputError(f"{option} {text}: expected two whole numbers HxW, e.g. 128x64")
    height, width = (int(v) for v in size)
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise BadInputError(f"{option} {text}: each side must be 1 to {MAX_IMAGE_SIDE} pixels, e.g. 128x64")
    return height, width


def parse_size(value: str, option: str = "--size") -> tuple[int, int]:
    """Parse "HxW" (e.g. "128x64") into (H, W)."""
    try:
        height, width = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected HxW, e.g. 128x64") from None
    if height <= 0 or width <= 0:
        raise BadInputError(f"{option} {value!r}: both sides must be positive")
    return height, width


def split_commas(*values: str) -> tuple[str, ...]:
    """Flatten repeated and comma-separated option values: ("mean", "black,random") -> 3 items."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def parse_numbers(value: str, option: str, kind: type = int, what: str = "integers",
                  example: str = "0,1,2") -> tuple:
    """"0,1,2" -> (0, 1, 2) with ``kind`` (int or float); a bad item is a one-line BadInputError."""
    try:
        return tuple(kind(part) for part in split_commas(value))
    except ValueError:
        raise BadInputError(f"{option} {value!r}: expected comma-separated {what}, e.g. {example}") from None


def int_list(value: str, option: str) -> tuple[int, ...]:
    """"40,70" -> (40, 70)."""
    return parse_numbers(value, option, int, "integers", "0,1,2")


def comma_text(values: Sequence[Any]) -> str:
    """(40, 70) -> "40,70"; the command-line form of a tuple option."""
    return ",".join(str(v) for v in values)


def size_text(size: Sequence[int]) -> str:
    """(256, 128) -> "256x128"."""
    return "x".join(str(int(v)) for v in size)


def comma_words(value: str, option: str) -> tuple[str, ...]:
    """"clean, occluded" -> ("clean", "occluded") (:func:`split_commas` as an :attr:`Option.parse`)."""
    return split_commas(value)


def path_value(value: str, option: str) -> Path:
    """The command line's text of a file or folder option as a :class:`~pathlib.Path` (an :attr:`Option.parse`)."""
    return Path(value)
