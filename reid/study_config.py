"""What a study is made of, torch-free: the grids, the cells (training runs) of the recipe
grid and :class:`StudyConfig`, whose fields declare the options of ``reid study`` once
(:class:`common.options.Option`; the command derives its Click options from them).

The runs themselves and their evaluation are :mod:`reid.study`, the report :mod:`reid.study_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common.errors import BadInputError
from common.options import Option, comma_text, comma_words, int_list, parse_numbers, validate_options
from reid.engine.config import TrainConfig
from reid.options import DEVICES, DISTANCE_CHOICES, METRIC

GRIDS: tuple[str, ...] = ("table1", "alpha", "occluders", "recipe")
DEFAULT_ALPHAS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.6, 0.4)


def _numbers_text(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _float_list(value: str, option: str) -> tuple[float, ...]:
    return parse_numbers(value, option, float, "numbers", "1,0.8,0.6")


def _path_list(value: str, option: str) -> tuple[Path, ...]:
    return tuple(Path(v) for v in comma_words(value, option))


@dataclass(frozen=True)
class Cell:
    """One training run of a grid.

    Attributes:
        name: folder-safe identifier ("aligned-obc").
        label: what the report calls it ("AlignedReID + OBC").
        alpha: L = alpha * L_T + (1 - alpha) * L_O.
        train_on: "clean", "occluded" or "both".
        train_occluders: occluder types whose copies the run trains on; empty = every type.
        on_validation: train on the validation file (train identities minus the held-out ones).
        overrides: other :class:`TrainConfig` fields this cell sets, as (name, value) pairs;
            Random Erasing is off in every cell that does not set it here.
        cost: images trained on per sampled item (2 for ``both``: each clean image and its
            copy). A cell of cost c trains ``epochs / c`` epochs (warm-up and milestones scaled
            alike), so that every row of the recipe grid gets the same compute budget.
        ramp_occlusion: ramp the occlusion probability of ``augment`` over the whole run.
    """

    name: str
    label: str
    alpha: float
    train_on: str
    train_occluders: tuple[str, ...] = ()
    on_validation: bool = False
    overrides: tuple[tuple[str, Any], ...] = ()
    cost: int = 1
    ramp_occlusion: bool = False

    def train_config(self, base: TrainConfig, **fields: Any) -> TrainConfig:
        """``base`` with this cell's settings, its budget scaled by :attr:`cost`, and ``fields``."""
        budget: dict[str, Any] = {}
        if self.cost != 1:
            budget = {"epochs": max(1, round(base.epochs / self.cost)),
                      "warmup_epochs": round(base.warmup_epochs / self.cost),
                      "milestones": tuple(max(1, round(m / self.cost)) for m in base.milestones)}
        # A row pins what it names, Random Erasing included (off unless the row turns it on), so
        # that a grid's rows differ from one another, not from the study's base options.
        pinned: dict[str, Any] = {"alpha": self.alpha, "train_on": self.train_on,
                                  "train_occluders": self.train_occluders, "random_erasing": False}
        config = replace(base, **{**pinned, **dict(self.overrides), **budget, **fields})
        if self.ramp_occlusion:  # from 0 at the first epoch to occlusion_p at the last
            config = replace(config, occlusion_ramp_epochs=max(1, config.epochs - 1))
        return config


#: The recipe grid (issue "a training recipe that wins both columns"): the clean-only
#: baseline, the paper's OBC recipe, and the variants that change one thing about how
#: occlusion is shown to the network. Every row gets the same compute (see ``Cell.cost``).
RECIPE_CELLS: tuple[Cell, ...] = (
    Cell("baseline", "clean-only baseline", 1.0, "clean"),
    Cell("erasing", "clean only + Random Erasing (BoT's p=0.5, 2-40 % of the area)", 1.0, "clean",
         overrides=(("random_erasing", True),)),
    Cell("paper-obc", "paper: clean + occluded pairs, OBC", 0.8, "both", cost=2),
    Cell("pairs-no-obc", "clean + occluded pairs, no OBC", 1.0, "both", cost=2),
    Cell("pairs-twin-free", "pairs, OBC, twin never the mined positive", 0.8, "both",
         overrides=(("exclude_twin_positive", True),), cost=2),
    Cell("pairs-clean-anchors", "pairs, OBC, clean TriHard anchors only", 0.8, "both",
         overrides=(("clean_anchors_only", True),), cost=2),
    Cell("augment", "occlusion as augmentation p=0.5, OBC", 0.8, "augment", overrides=(("occlusion_p", 0.5),)),
    Cell("augment-no-obc", "occlusion as augmentation p=0.5, no OBC", 1.0, "augment",
         overrides=(("occlusion_p", 0.5),)),
    Cell("augment-ramp", "occlusion as augmentation, p ramped 0→0.5, OBC", 0.8, "augment",
         overrides=(("occlusion_p", 0.5),), ramp_occlusion=True),
    Cell("augment-erasing", "occlusion as augmentation p=0.5 + Random Erasing, OBC", 0.8, "augment",
         overrides=(("occlusion_p", 0.5), ("random_erasing", True))),
    Cell("augment-visibility", "occlusion as augmentation p=0.5, OBC + visibility head", 0.8, "augment",
         overrides=(("occlusion_p", 0.5), ("visibility_weight", 1.0))),
    # Rows aimed at both columns from ImageNet weights (issue 16): Random Erasing made to look
    # like the occluders (mixed fills), made to teach the OBC head (its boxes labelled as
    # occlusions), and the file's pairs with each occluded copy pulled toward its clean twin.
    Cell("erasing-mixed", "clean + Random Erasing, mixed fills (mean, black, noise)", 1.0, "clean",
         overrides=(("random_erasing", True), ("erasing_fill", "mixed"))),
    # After the screens showed every row above losing to the baseline on the held-out pedestrian
    # occluder: erasing whose boxes hold real image content (another identity's), not a flat fill.
    Cell("erasing-patch", "clean + Random Erasing filled with another identity's image patch", 1.0, "clean",
         overrides=(("random_erasing", True), ("erasing_fill", "patch"))),
    Cell("erasing-obc", "clean + Random Erasing labelled as occlusion, OBC", 0.8, "clean",
         overrides=(("random_erasing", True), ("erasing_labels", True))),
    Cell("erasing-mixed-obc", "clean + Random Erasing, mixed fills, labelled as occlusion, OBC", 0.8, "clean",
         overrides=(("random_erasing", True), ("erasing_fill", "mixed"), ("erasing_labels", True))),
    Cell("pairs-twin", "clean + occluded pairs, twin consistency, no OBC", 1.0, "both",
         overrides=(("twin_weight", 1.0),), cost=2),
    Cell("pairs-twin-erasing", "clean + occluded pairs + Random Erasing, twin consistency, no OBC", 1.0, "both",
         overrides=(("twin_weight", 1.0), ("random_erasing", True)), cost=2),
)

#: Occluder types no grid row trains on (unless a row names them): query sets that measure
#: whether robustness learnt on the other occluders transfers to one never seen in training.
HELD_OUT_OCCLUDERS: tuple[str, ...] = ("pedestrian",)


def without_held_out(cell: Cell, train_types: tuple[str, ...]) -> Cell:
    """``cell`` training on ``train_types`` minus :data:`HELD_OUT_OCCLUDERS` when it would train on
    every type of a file that holds a held-out one; otherwise ``cell`` unchanged (so cells of
    files without held-out types keep the configuration they were trained with)."""
    held_out = [t for t in train_types if t in HELD_OUT_OCCLUDERS]
    if cell.train_on == "clean" or cell.train_occluders or not held_out:
        return cell
    return replace(cell, train_occluders=tuple(t for t in train_types if t not in HELD_OUT_OCCLUDERS))

#: The row of the recipe grid that ``reid train`` runs by default: :class:`TrainConfig`'s
#: defaults are this row's settings (tests/test_study.py holds the two together). Chosen by
#: the grid on the CUHK01 dev set (README, "Accuracy on real pedestrians").
DEFAULT_RECIPE: str = "erasing"


def recipe_cell(name: str) -> Cell:
    """The recipe grid's row called ``name``."""
    return next(c for c in RECIPE_CELLS if c.name == name)


def this_project_cell() -> Cell:
    """Table 1's "this project" row: the default recipe."""
    cell = recipe_cell(DEFAULT_RECIPE)
    return replace(cell, name="this-project", label=f"this project: {cell.label}")


#: Identities the table1 grid's Grad-CAM sheet draws, however many queries its share averages over.
SALIENCY_SHEET_ROWS = 8


@dataclass(frozen=True)
class StudyConfig:
    """A study: which grid, on which data, with which training options for every cell.

    Attributes:
        grid: one of :data:`GRIDS`.
        data: the occluded-reid HDF5 file.
        out: the report folder.
        base: the training options every cell starts from (arch, size, epochs, batch, ...).
        seeds: one run per cell and seed; the report gives mean +- std over seeds.
        alphas: the alpha grid's values.
        val_fraction: share of training identities held out for the alpha grid's selection.
        device: evaluation device ("auto", "cpu", "cuda").
        saliency: draw Grad-CAM sheets for the table1 grid (baseline vs OBC).
        saliency_queries: table1 grid: occluded queries (one per identity) the share of
            Grad-CAM mass inside the box is averaged over; the sheet draws the first
            :data:`SALIENCY_SHEET_ROWS`.
        test_data: other occluded-reid files every cell is also evaluated on (cross-dataset).
        cells: the recipe grid's rows to run (names of :data:`RECIPE_CELLS`); empty = all.
        distance: retrieval distance every cell is evaluated with ("global", "local",
            "global+local"; a checkpoint with a visibility head uses the visibility-weighted
            aligned distance for the local part).
        metric: distance on the global feature every cell is evaluated with ("euclidean" or
            "cosine"; BoT compares BN-neck features by cosine).
        flip: evaluate every cell on features averaged with those of the mirrored image.
        skip_busy: pass over the cells another process runs (each cell is locked while it runs)
            and return without the report, instead of waiting for them.
        reuse_from: report folders of other studies whose finished cells of the same training
            options, seed and training file stand in for this study's (:func:`reid.study.reused_result`).
    """

    grid: str
    data: Path
    out: Path
    base: TrainConfig
    seeds: tuple[int, ...] = Option((0,), "Comma-separated seeds: one run per cell and seed; the report gives "
                                          "mean ± std.", text=comma_text, parse=int_list).field()
    alphas: tuple[float, ...] = Option(DEFAULT_ALPHAS, "alpha grid: the values to sweep.", text=_numbers_text,
                                       parse=_float_list).field()
    val_fraction: float = Option(0.2, "alpha grid: share of training identities held out for selection.",
                                 low=0.0, high=1.0, low_open=True, high_open=True).field()
    device: str = Option("auto", cli="", choices=DEVICES).field()
    saliency: bool = Option(True, "table1 grid: Grad-CAM sheets of its models on occluded queries.",
                            flag=True).field()
    saliency_queries: int = Option(8, "table1 grid: occluded queries (one per identity) the Grad-CAM "
                                   "share inside the box is averaged over (at most every query identity); the sheet "
                                   f"draws {SALIENCY_SHEET_ROWS} of them.", low=1).field()
    test_data: tuple[Path, ...] = ()
    cells: tuple[str, ...] = Option((), "recipe grid: the rows to run, comma-separated (" +
                                    ", ".join(c.name for c in RECIPE_CELLS) + "). Default: all.",
                                    metavar="NAMES", text=comma_text, parse=comma_words).field()
    distance: str = Option("global", "Retrieval distance every cell is evaluated with.",
                           choices=DISTANCE_CHOICES).field()
    metric: str = METRIC.field()
    flip: bool = Option(False, "Evaluate every cell on features averaged with those of the mirrored image "
                               "(finished cells are evaluated again, not trained).", flag=True).field()
    skip_busy: bool = Option(False, "Pass over the cells another process is running and stop without the report "
                                    "(run the study again for it), instead of waiting for them.", flag=True).field()
    reuse_from: tuple[Path, ...] = Option((), "A folder written by `reid study`: its finished cells with the same "
                                              "training options, seed and file are reused, not trained. Repeatable.",
                                          metavar="PATH", multiple=True, parse=_path_list).field()

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise BadInputError(f"study grid {self.grid!r}: use one of {', '.join(GRIDS)}")
        validate_options(self)
        known = [c.name for c in RECIPE_CELLS]
        unknown = [c for c in self.cells if c not in known]
        if unknown:
            raise BadInputError(f"--cells {unknown[0]!r}: unknown recipe cell; use some of {', '.join(known)}")
        if self.cells and self.grid != "recipe":
            raise BadInputError(f"--cells: applies to the recipe grid only, not {self.grid!r}; drop it")
        if not self.seeds:
            raise BadInputError("--seeds: give at least one seed")
        if any(not 0.0 <= a <= 1.0 for a in self.alphas):
            raise BadInputError(f"--alphas {list(self.alphas)}: each must be between 0 and 1")
