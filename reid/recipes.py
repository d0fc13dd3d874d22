"""Named training recipes (``reid train --recipe NAME[,NAME...]``, ``reid recipes``), torch-free.

Two kinds, applied left to right to :class:`reid.engine.config.TrainConfig`'s defaults:

* **Sizings** set the backbone, input size, schedule and device for a machine: ``cpu`` (the
  random-init resnet18 recipe every CPU-measured row of the README uses), ``cpu-imagenet``
  (MobileNetV2 from ImageNet weights at 256x128, last stride 2, the sizing of the ImageNet grid).
  ``TrainConfig``'s own defaults are the GPU sizing (resnet50, 256x128, 120 epochs).
* **Rows** set what the network is shown and which losses it trains with: every row of the
  recipe grid (:data:`reid.study_config.RECIPE_CELLS`: ``baseline``, ``erasing`` = the
  default, ``paper-obc``, ...), exactly as ``reid study recipe`` trains it (a row that trains
  on clean + occluded pairs trains half the epochs of the sizing before it).

``--recipe cpu,paper-obc`` is the paper's recipe at the CPU sizing. Options given on the
command line override every recipe, and ``--config FILE`` (a JSON or YAML mapping of
``TrainConfig`` fields, or a run's own ``config.json``) sits between the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from common.errors import BadInputError
from reid.engine.config import TrainConfig
from reid.study_config import DEFAULT_RECIPE, RECIPE_CELLS, recipe_cell


@dataclass(frozen=True)
class Sizing:
    """A named set of :class:`TrainConfig` fields sized for a machine.

    Attributes:
        name: what ``--recipe`` calls it.
        summary: one line for ``reid recipes``.
        settings: (field, value) pairs.
    """

    name: str
    summary: str
    settings: tuple[tuple[str, Any], ...]


SIZINGS: tuple[Sizing, ...] = (
    Sizing("cpu", "resnet18 from random init at 128x64 for 2 CPU cores (README, step 0)", (
        ("arch", "resnet18"), ("pretrained", None), ("input_size", (128, 64)), ("last_stride", 2),
        ("num_stripes", 4), ("epochs", 58), ("warmup_epochs", 2), ("lr", 1e-3), ("schedule", "cosine"),
        ("retrieval_feature", "bn"), ("workers", 0), ("device", "cpu"))),
    # 256x128 beat 128x64 (last stride 1) by 9 clean mAP at equal CPU on the CUHK01 validation
    # file once the run was long enough (docs/results.md); 21 epochs = about 2,500 CPU-s there.
    Sizing("cpu-imagenet", "MobileNetV2 from ImageNet weights (pass --pretrained PATH offline) at 256x128, "
                           "last stride 2, for 2 CPU cores", (
        ("arch", "mobilenet_v2"), ("input_size", (256, 128)), ("last_stride", 2), ("num_stripes", 8),
        ("epochs", 21), ("warmup_epochs", 1), ("lr", 3.5e-4), ("schedule", "cosine"), ("retrieval_feature", "bn"),
        ("workers", 0), ("device", "cpu"))),
)


def recipe_names() -> tuple[str, ...]:
    """Every name ``--recipe`` accepts: the sizings, then the grid's rows."""
    return tuple(s.name for s in SIZINGS) + tuple(c.name for c in RECIPE_CELLS)


def describe_recipes() -> list[tuple[str, str, str]]:
    """(name, summary, what it sets) for every recipe, as ``reid recipes`` prints them."""
    rows = [(s.name, s.summary, ", ".join(f"{k}={_text(k, v)}" for k, v in s.settings)) for s in SIZINGS]
    for cell in RECIPE_CELLS:
        base = TrainConfig()
        changed = cell.train_config(base).to_dict()
        defaults = base.to_dict()
        sets = ", ".join(f"{k}={_text(k, changed[k])}" for k in changed if changed[k] != defaults[k])
        if cell.cost != 1:
            sets += f" (epochs, warm-up and milestones / {cell.cost}: two images per item)"
        label = cell.label + (" [the default]" if cell.name == DEFAULT_RECIPE else "")
        rows.append((cell.name, label, sets or "the defaults"))
    return rows


def _text(key: str, value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ("x" if key == "input_size" else ",").join(map(str, value))
    return "none" if value is None else str(value)


def apply_recipes(config: TrainConfig, names: tuple[str, ...]) -> TrainConfig:
    """``config`` with the recipes ``names`` applied left to right.

    Raises:
        BadInputError: an unknown name (the message lists the known ones).
    """
    sizings = {s.name: s for s in SIZINGS}
    for name in names:
        if name in sizings:
            config = replace(config, **dict(sizings[name].settings))
        elif name in {c.name for c in RECIPE_CELLS}:
            config = recipe_cell(name).train_config(config)
        else:
            raise BadInputError(f"--recipe {name!r}: unknown; use one or more of {', '.join(recipe_names())} "
                                "(`reid recipes` says what each sets)")
    return config


#: Fields a config file never sets: the run folder and what to do with it are the command
#: line's (a run's config.json names its own folder, which a new run must not replace).
OPERATIONAL_FIELDS: frozenset[str] = frozenset({"out", "resume", "force"})


def read_config_file(path: Path) -> dict[str, Any]:
    """The :class:`TrainConfig` fields of a JSON or YAML file (a run's ``config.json`` works:
    its ``train`` mapping is used), without :data:`OPERATIONAL_FIELDS`.

    Raises:
        BadInputError: a missing or unreadable file, not a mapping, or unknown field names.
    """
    if not path.is_file():
        raise BadInputError(f"--config {path}: no such file; give a JSON or YAML file of training options "
                            "(a run's config.json works)")
    text = path.read_text(errors="replace")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError, ImportError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"--config {path}: cannot be read ({first}); fix the file or write it as JSON") from exc
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]  # a run's config.json: {"train": ..., "model": ..., ...}
    if not isinstance(data, dict):
        raise BadInputError(f"--config {path}: expected a mapping of training options, got {type(data).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInputError(f"--config {path}: unknown options {unknown}; `reid train --help` lists them "
                            "(written with underscores, e.g. input_size)")
    return {k: v for k, v in data.items() if k not in OPERATIONAL_FIELDS}


def layered_config(recipes: tuple[str, ...], config_file: Path | None, given: dict[str, Any]) -> TrainConfig:
    """The run's configuration: :class:`TrainConfig`'s defaults, then ``recipes`` left to right,
    then the fields of ``config_file``, then ``given`` (the options typed on the command line).

    Raises:
        BadInputError: an unknown recipe, a bad config file, or a combination no run could use.
    """
    merged = apply_recipes(TrainConfig(), recipes).to_dict()
    if config_file is not None:
        merged.update(read_config_file(config_file))
    merged.update(given)
    return TrainConfig(**merged)
