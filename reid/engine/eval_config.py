"""What ``reid eval`` evaluates, and how (:class:`EvalConfig`), torch-free.

Each field declares its option once (:class:`common.options.Option` in the field's metadata):
default, help, command-line name, choices and bounds. The config checks itself against them
(plus the checks that involve several fields) when it is built; ``reid eval`` derives its
Click options from them (:mod:`cli.options`), and :func:`reid.engine.evaluator.evaluate_model`
takes its defaults from them and checks its arguments by building one. Importing this module
loads neither torch nor numpy, so ``reid eval --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import BadInputError
from common.options import Option, comma_words, option_of, path_value, validate_options
from reid.engine.config import TrainConfig
from reid.options import DISTANCE_CHOICES, GALLERY_CHOICES, METRIC

#: ``visibility``: "auto" resolves to "on" or "off" (:func:`resolve_visibility`).
VISIBILITY_CHOICES: tuple[str, ...] = ("auto", "on", "off", "both")


@dataclass(frozen=True)
class EvalConfig:
    """What ``reid eval`` evaluates, and how.

    Attributes:
        data: the occluded-reid HDF5 file.
        checkpoint: a checkpoint written by ``reid train`` (or :func:`save_checkpoint`), or a
            run folder; None: the newest run's under ``runs/``
            (:func:`reid.engine.runs.resolve_checkpoint`).
        queries: query sets: "clean", "occluded", "occluded:<type>" or "all" (see
            :func:`reid.engine.queries.expand_queries`).
        gallery: "clean" or "all".
        distance: "global" (default; AlignedReID reports global-only retrieval because the
            local branch adds little once trained jointly), "local" or "global+local".
        metric: "euclidean" or "cosine", for the global part of the distance.
        visibility: "auto", "on", "off" or "both": the visibility-weighted local distance
            (see :mod:`reid.engine.evaluator`; "on"/"both" need a model with a visibility head
            and a local distance).
        rerank: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
        flip: average each image's features with those of its horizontal mirror.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        batch_size: images per forward pass.
        shortlist: with distance "global+local", compute the aligned distance only for each
            query's ``shortlist`` nearest gallery rows by global distance.
        max_rank: length of the CMC curve.
        workers: data-loader processes (0, the default: images read in this process;
            training's validation passes ``reid train --workers``).
        amp: autocast (float16) during feature extraction; effective on CUDA only.
    """

    data: Path = Option(Path("data/occluded.h5"), "The occluded-reid HDF5 file made by `occsim generate`.",
                        metavar="PATH", parse=path_value).field()
    checkpoint: Path | None = Option(
        None, "Checkpoint to evaluate, or a run folder (its best.pt, else last.pt). "
              "Default: best.pt (else last.pt) of the newest run under runs/.",
        metavar="PATH", parse=path_value).field()
    queries: tuple[str, ...] = Option(
        ("all",), "Query set: clean, occluded (one row per occluder type in the file), occluded:TYPE "
                  "(e.g. occluded:mean) or all (clean + every occluded type). Repeatable or comma-separated.",
        cli="--query", metavar="SET", multiple=True, parse=comma_words).field()
    gallery: str = Option("clean", "clean: the clean gallery rows (the standard setting); all: every gallery row "
                                   "(differs only for files made with --occlude-gallery).",
                          choices=GALLERY_CHOICES).field()
    distance: str = Option(
        "global", "Retrieval distance. AlignedReID retrieves with the global feature alone by default (the aligned "
                  "local branch mainly helps training); local is the aligned stripe distance and global+local their "
                  "sum.", choices=DISTANCE_CHOICES).field()
    metric: str = METRIC.field()
    visibility: str = Option(
        "auto", "Visibility-weighted aligned distance (models trained with --visibility-weight): stripes that either "
                "image predicts hidden weigh less. auto: on when the checkpoint has a visibility head and --distance "
                "is local or global+local (without --shortlist), else off; both: every query set twice, the weighted "
                "rows named SET+vis.", choices=VISIBILITY_CHOICES).field()
    rerank: bool = Option(False, "k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).", flag=True).field()
    flip: bool = Option(False, "Average each image's features with those of its mirror image.", flag=True).field()
    device: str = option_of(TrainConfig, "device").field()
    batch_size: int = Option(128, "Images per forward pass.", low=1).field()
    shortlist: int | None = Option(
        None, "With --distance global+local: aligned distance only for each query's K nearest gallery images by "
              "global distance (for galleries too large for the full matrix).", low=1, metavar="K").field()
    max_rank: int = Option(50, "Length of the CMC curve.", low=1).field()
    workers: int = Option(0, "Data-loader processes (0: images read in this process).", low=0).field()
    amp: bool = True  # not a command-line option: the trainer passes its own setting

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(self.queries))
        validate_options(self)
        if self.shortlist is not None and self.distance != "global+local":
            raise BadInputError("--shortlist: only applies to --distance global+local; drop it or change --distance")
        if self.shortlist is not None and self.rerank:
            # Shortlisted rows carry an offset that only orders them; re-ranking reads distances as distances.
            raise BadInputError("--shortlist with --rerank: re-ranking needs the full distance matrix; "
                                "drop one of them")


def resolve_visibility(visibility: str, has_head: bool, distance: str, shortlist: int | None) -> str:
    """The visibility setting an evaluation runs with: "on", "off" or "both".

    "auto" is "on" when the model has a visibility head and the distance has a local part
    (without ``shortlist``), else "off".

    Raises:
        BadInputError: an unknown value, or "on"/"both" without a head, with the global
            distance alone, or with a shortlist.
    """
    option_of(EvalConfig, "visibility").check("visibility", visibility)
    if visibility == "auto":
        return "on" if has_head and distance != "global" and shortlist is None else "off"
    if visibility == "off":
        return "off"
    if not has_head:
        raise BadInputError(f"--visibility {visibility}: the model has no visibility head; train it with "
                            "--visibility-weight > 0, or use --visibility off")
    if distance == "global":
        raise BadInputError(f"--visibility {visibility}: weighs the local stripes; use --distance local or "
                            "global+local, or --visibility off")
    if shortlist is not None:
        raise BadInputError(f"--visibility {visibility} with --shortlist: the shortlist uses the plain aligned "
                            "distance; drop --shortlist or use --visibility off")
    return visibility
