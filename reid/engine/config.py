"""The configuration of a training run (:class:`TrainConfig`), torch-free.

Each field declares its option once (:class:`common.options.Option` in the field's metadata):
default, help, command-line name, choices and bounds. :meth:`TrainConfig.validate` checks the
fields against them (plus the checks that involve several fields); ``reid train`` and
``reid study`` derive their Click options from them (:mod:`cli.train_options`). Importing this
module loads neither torch nor the model, so ``reid train --help`` stays fast.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from common.errors import BadInputError
from common.options import (
    Option,
    check_image_size,
    comma_text,
    comma_words,
    int_list,
    parse_size,
    size_text,
    validate_options,
)
from reid.options import (
    ALPHA,
    ARCH_DIMS,
    CLEAN_ANCHORS_ONLY,
    DEVICES,
    ERASING_FILLS,
    EXCLUDE_TWIN_POSITIVE,
    LABEL_SMOOTHING,
    MARGIN,
    OPTIMIZERS,
    RETRIEVAL_FEATURES,
    SCHEDULES,
    TRAIN_ON,
    TWIN_WEIGHT,
    VISIBILITY_WEIGHT,
)

if TYPE_CHECKING:
    from reid.data.transforms import TransformConfig
    from reid.losses import LossConfig

#: Config keys that may change when resuming a run (they do not change what is learned).
RESUME_MUTABLE: frozenset[str] = frozenset(
    {"epochs", "eval_every", "eval_queries", "workers", "device", "resume", "force", "out", "data"}
)


def _pretrained_text(value: str | None) -> str:
    return "none" if value is None else str(value)


def _pretrained(value: str, option: str) -> str | None:
    return None if value.lower() == "none" else value


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (written to config.json and every checkpoint).

    Attributes:
        data: the occluded-reid HDF5 file.
        out: the run folder.
        arch: torchvision backbone (resnet18/34/50/101, mobilenet_v2).
        pretrained: "imagenet", a path to a torchvision state dict, or None (random init).
        init_from: a ``reid train`` checkpoint whose every part but the identity classifier
            starts this run (:mod:`reid.models.transfer`); None = start from ``pretrained``.
        epochs: epochs to train (see the module doc for what an epoch is).
        batch_p, batch_k: identities per batch and images per identity, per process; with
            ``train_on="both"`` a batch holds 2 * P * K images (each clean image and its copy).
        optimizer: "adam" (default, lr 3.5e-4 as in BoT) or "sgd" (momentum, Nesterov).
        lr: base learning rate; momentum: SGD momentum; weight_decay: L2 on every parameter.
        warmup_epochs, warmup_factor: linear warm-up from ``warmup_factor * lr`` to ``lr``.
        schedule: "step" (x ``gamma`` at each of ``milestones``, in epochs) or "cosine".
        alpha: L = alpha * L_T + (1 - alpha) * L_OBC; 1 = plain AlignedReID.
        margin: TriHard margin; label_smoothing: identity cross-entropy smoothing.
        train_on: "clean", "occluded", "both" (every clean image with one of its occluded
            copies in the same batch) or "augment" (occlusion as a per-image augmentation: each
            clean image is read as one of its occluded copies with probability ``occlusion_p``).
        occlusion_p: "augment": the probability (after the ramp) that an image is read occluded.
        occlusion_ramp_epochs: "augment": ramp the probability linearly from 0 at the first
            epoch to ``occlusion_p`` at this (0-based) epoch; 0 = no ramp.
        exclude_twin_positive: an image's own clean/occluded twin is never its mined positive.
        clean_anchors_only: occluded images are not TriHard anchors (they still feed ID and OBC).
        retrieval_feature: "global" (AlignedReID) or "bn" (BoT's BNNeck feature) for evaluation.
        num_stripes: local stripes (AlignedReID: 8 at 256x128); at most the feature map's height
            (input height / 16 with ``last_stride=1``, / 32 with 2) makes sense.
        visibility_weight: weight of the per-stripe visibility loss (a term of its own, see
            :mod:`reid.losses.multitask`); > 0 adds the visibility head to the model
            (``ModelConfig.visibility_head``), 0 = no head (the default).
        train_occluders: occluder types whose copies are trained on ("occluded", "both");
            empty = every type in the file.
        input_size: network input (H, W).
        last_stride: 1 (BoT) or 2 (original AlignedReID).
        random_erasing: Random Erasing augmentation.
        erasing_fill: its fill ("mean", "black", "random", "mixed", "patch"; see
            :class:`reid.data.transforms.TransformConfig`).
        erasing_labels: its boxes count as occlusions (OBC and visibility targets).
        twin_weight: weight of the twin-consistency loss (``train_on="both"``).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        amp: mixed precision; None = on with CUDA, off on the CPU; True on a CPU = bf16 where
            it is native (:func:`reid.engine.optim.resolve_amp`).
        workers: data-loader processes.
        seed: seeds the model initialisation, the sampler and the augmentation.
        eval_every: validate every N epochs and after the last (0 = never).
        eval_queries: query sets for validation (see :func:`reid.engine.queries.expand_queries`).
        resume: continue the run in ``out`` from its last.pt.
        force: delete the run in ``out`` and start over.
        max_steps_per_epoch: cut every epoch to this many steps (tiny runs, demos).
    """

    data: str = "data/occluded.h5"
    out: str = "runs/default"
    arch: str = Option("resnet50", "Backbone: a torchvision ResNet (resnet18 for CPU runs) or mobilenet_v2.",
                       choices=tuple(ARCH_DIMS)).field()
    pretrained: str | None = Option(
        "imagenet", "Backbone initialisation: torchvision ImageNet weights (cache or download; random init with a "
                    "warning when offline), none, or a torchvision state-dict file.",
        metavar="imagenet|none|PATH", text=_pretrained_text, parse=_pretrained).field()
    init_from: str | None = Option(
        None, "Start from a reid checkpoint (cross-dataset fine-tuning): every part but the identity classifier, "
              "made anew for this file's identities; --pretrained is then not used.", metavar="CHECKPOINT").field()
    epochs: int = Option(120, "Epochs to train.", low=1).field()
    batch_p: int = Option(16, "Identities per batch (per process under torchrun).", low=2,
                          why="TriHard needs at least 2 identities per batch").field()
    batch_k: int = Option(4, "Images per identity; with --train-on both each comes with its occluded copy.",
                          low=1).field()
    optimizer: str = Option("adam", "Adam (lr 3.5e-4 as in BoT) or SGD (momentum, Nesterov).",
                            choices=OPTIMIZERS).field()
    lr: float = Option(3.5e-4, "Base learning rate.", low=0.0, low_open=True).field()
    momentum: float = Option(0.9, cli="", low=0.0).field()
    weight_decay: float = Option(5e-4, "L2 weight decay on every parameter.", low=0.0).field()
    warmup_epochs: int = Option(10, "Linear warm-up from lr/100 to lr over this many epochs.", low=0).field()
    warmup_factor: float = Option(0.01, cli="", low=0.0, high=1.0, low_open=True).field()
    schedule: str = Option("step", "After warm-up: x0.1 at each --milestones epoch, or cosine to 0.",
                           choices=SCHEDULES).field()
    milestones: tuple[int, ...] = Option((40, 70), "Step-schedule epochs, comma-separated.", text=comma_text,
                                         parse=int_list).field()
    gamma: float = Option(0.1, cli="", low=0.0, high=1.0, low_open=True).field()
    # The defaults below (train-on clean, alpha 1, Random Erasing, the BNNeck retrieval feature)
    # are the recipe grid's winner on real pedestrians (reid.study_config.DEFAULT_RECIPE);
    # the paper's recipe is --train-on both --alpha 0.8 --no-random-erasing.
    alpha: float = ALPHA.field(default=1.0)
    margin: float = MARGIN.field()
    label_smoothing: float = LABEL_SMOOTHING.field()
    train_on: str = Option(
        "clean", "both: every batch holds clean images and their occluded copies; augment: occlusion as a "
                "per-image augmentation (each clean image read as one of its occluded copies with probability "
                "--occlusion-p, no twin in the batch).", choices=TRAIN_ON).field()
    train_occluders: tuple[str, ...] = Option(
        (), "Occluder types (comma-separated, e.g. mean,black) whose copies are trained on with "
            "--train-on occluded|both|augment. Default: every type in the file.",
        metavar="TYPES", text=comma_text, parse=comma_words).field()
    occlusion_p: float = Option(0.5, "--train-on augment: probability that an image is read as one of its "
                                     "occluded copies.", low=0.0, high=1.0).field()
    occlusion_ramp_epochs: int = Option(0, "--train-on augment: ramp the probability from 0 to --occlusion-p over "
                                           "this many epochs (0 = no ramp).", low=0, note="(0 = no ramp)").field()
    exclude_twin_positive: bool = EXCLUDE_TWIN_POSITIVE.field()
    clean_anchors_only: bool = CLEAN_ANCHORS_ONLY.field()
    retrieval_feature: str = Option(
        "bn", "Feature evaluation retrieves with: the pooled feature (AlignedReID) or the same after the BN "
                  "neck (BoT's BNNeck); recorded in the checkpoint.", choices=RETRIEVAL_FEATURES).field()
    num_stripes: int = Option(8, "Local stripes of the aligned branch (at most the feature map's height).",
                              cli="--stripes", low=1).field()
    visibility_weight: float = VISIBILITY_WEIGHT.field()
    input_size: tuple[int, int] = Option((256, 128), "Network input size.", cli="--size", metavar="HxW",
                                         text=size_text, parse=parse_size).field()
    last_stride: int = Option(1, "Stride of layer4: 1 doubles the last feature map's resolution (BoT) at ~1.7x the "
                                 "backbone cost for resnet18.", choices=(1, 2)).field()
    random_erasing: bool = Option(True, "Random Erasing (BoT's p 0.5, 2-40 % of the area, mean fill).",
                                  flag=True).field()
    erasing_fill: str = Option("mean", "Random Erasing's fill: the normalisation mean colour, black, random pixels, "
                                       "mixed (one of the three per box), or patch (the same box of another identity's "
                                       "training image).", choices=ERASING_FILLS).field()
    erasing_labels: bool = Option(False, "Random Erasing's boxes count as occlusions: an erased clean image is "
                                         "labelled occluded (OBC target) with the box as its occluder (visibility "
                                         "target).", flag=True).field()
    twin_weight: float = TWIN_WEIGHT.field()
    device: str = Option("auto", "auto: CUDA when available, else the CPU.", choices=DEVICES).field()
    amp: bool | None = Option(None, "Mixed precision (bf16, or fp16 with loss scaling); default on with CUDA. "
                                    "On a CPU, bf16 where the CPU runs it natively (AVX512-BF16, AMX), else "
                                    "float32.", flag=True, tristate=True).field()
    workers: int = Option(4, "Data-loader processes.", low=0).field()
    seed: int = Option(0, "Seeds the model initialisation, the sampler and the augmentation.").field()
    eval_every: int = Option(10, "Validate (R1, mAP on clean and occluded queries) every N epochs and after the "
                                 "last; 0 = never.", low=0, note="(0 = never)").field()
    eval_queries: tuple[str, ...] = Option(("clean", "occluded"), "Validation query sets: clean, occluded, "
                                           "occluded:TYPE, all (comma-separated).",
                                           text=comma_text, parse=comma_words).field()
    resume: bool = Option(False, "Continue the run in --out from its last.pt.", flag=True).field()
    force: bool = Option(False, "Delete the run in --out and start over.", flag=True).field()
    max_steps_per_epoch: int | None = Option(None, "Cut every epoch to this many steps (tiny runs and demos).",
                                             low=1).field()

    def __post_init__(self) -> None:
        # Normalise JSON-ish values (lists, Paths) so that equal configs compare equal.
        object.__setattr__(self, "data", str(self.data))
        object.__setattr__(self, "out", str(self.out))
        if self.pretrained is not None:
            object.__setattr__(self, "pretrained", str(self.pretrained))
        if self.init_from is not None:
            object.__setattr__(self, "init_from", str(self.init_from))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "eval_queries", tuple(str(q) for q in self.eval_queries))
        object.__setattr__(self, "train_occluders", tuple(str(t) for t in self.train_occluders))
        self.validate()

    def validate(self) -> None:
        """Raise BadInputError for option values no run could use: each field against its
        declared choices and bounds, then the checks that involve several fields."""
        validate_options(self)

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise BadInputError(message)

        need(all(m > 0 for m in self.milestones), f"--milestones {list(self.milestones)}: epochs must be positive")
        need(not (self.train_occluders and self.train_on == "clean"),
             "--train-occluders: applies to --train-on occluded, both or augment; drop it with --train-on clean")
        # The visibility targets are the occluder boxes of the file's copies: clean-only
        # training would teach the head that every stripe is always visible.
        need(not (self.visibility_weight > 0 and self.train_on == "clean" and not self.erasing_labels),
             f"--visibility-weight {self.visibility_weight:g}: its targets are the boxes of the file's occluded "
             "copies; add --train-on augment (or both, occluded), or --erasing-labels")
        need(self.random_erasing or (self.erasing_fill == "mean" and not self.erasing_labels),
             "--erasing-fill/--erasing-labels: they change Random Erasing, which is off; add --random-erasing")
        need(not (self.erasing_labels and self.train_on == "both"),
             "--erasing-labels: a --train-on both batch labels its halves clean and occluded by construction; "
             "use --train-on clean or augment")
        need(not (self.twin_weight > 0 and self.train_on != "both"),
             f"--twin-weight {self.twin_weight:g}: it pulls each occluded copy toward its clean twin in the same "
             "batch; add --train-on both")
        need(len(self.input_size) == 2 and min(self.input_size) >= 16,
             f"--size {'x'.join(map(str, self.input_size))}: both sides must be at least 16 pixels")
        check_image_size(self.input_size)  # before any work: a huge size fails in cv2, mid-run
        need(bool(self.eval_queries), "eval_queries: give at least one query set")
        need(not (self.resume and self.force), "--resume and --force: pass one of them, not both")
        # The run folder's files are replaced by this run: a checkpoint in it is an input.
        need(not (self.init_from and os.path.realpath(os.path.dirname(os.path.abspath(self.init_from)))
                  == os.path.realpath(self.out)),
             f"--init-from {self.init_from}: it lies in --out {self.out}, whose files this run replaces; "
             "choose another --out")

    def to_dict(self) -> dict[str, Any]:
        """JSON- and ``weights_only``-safe dict (tuples become lists)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise BadInputError (another version)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadInputError(f"training config: unknown keys {unknown}; it was written by another version")
        return cls(**data)

    @property
    def loss_config(self) -> LossConfig:
        from reid.losses import LossConfig

        return LossConfig(alpha=self.alpha, margin=self.margin, label_smoothing=self.label_smoothing,
                          exclude_twin_positive=self.exclude_twin_positive,
                          clean_anchors_only=self.clean_anchors_only,
                          visibility_weight=self.visibility_weight, twin_weight=self.twin_weight)

    @property
    def transform_config(self) -> TransformConfig:
        from reid.data.transforms import TransformConfig

        return TransformConfig(size=self.input_size, random_erasing=self.random_erasing,
                               erasing_fill=self.erasing_fill, erasing_labels=self.erasing_labels)


def config_warnings(config: TrainConfig) -> list[str]:
    """One line for each part of the learning-rate schedule that ``config.epochs`` cuts short
    (a run that never reaches its peak learning rate, or never decays, trains differently
    from what its options say), and for more stripes than the last feature map has rows
    (adaptive pooling then repeats rows: the extra stripes add cost, not information)."""
    out = []
    rows = max(1, config.input_size[0] // (16 if config.last_stride == 1 else 32))  # the last map's rows
    if config.num_stripes > rows:
        out.append(f"--stripes {config.num_stripes}: the last feature map of a {config.input_size[0]}-pixel-high "
                   f"input has {rows} rows at --last-stride {config.last_stride}, so stripes repeat rows; use at "
                   f"most {rows}")
    if config.warmup_epochs >= config.epochs:
        out.append(f"--warmup-epochs {config.warmup_epochs} is not shorter than --epochs {config.epochs}: the "
                   f"learning rate never reaches --lr {config.lr:g}; lower --warmup-epochs (or use a --recipe)")
    late = [m for m in config.milestones if m >= config.epochs]
    if config.schedule == "step" and late:
        out.append(f"--milestones {','.join(map(str, late))} fall at or after --epochs {config.epochs}: those "
                   "decays never happen; lower them or use --schedule cosine")
    return out


def config_differences(given: TrainConfig, recorded: dict[str, Any],
                       ignore: frozenset[str] = RESUME_MUTABLE) -> list[str]:
    """Keys (outside ``ignore``, by default :data:`RESUME_MUTABLE`: what a resume may change)
    whose value in ``given`` differs from ``recorded``.

    ``recorded`` is a :meth:`TrainConfig.to_dict` from a checkpoint; a key it lacks (written
    before that option existed) counts as its default. Returns "key: recorded -> given"
    strings, sorted by key.
    """
    mine = given.to_dict()
    defaults = TrainConfig().to_dict()
    out = []
    for key in sorted(mine):
        if key in ignore:
            continue
        theirs = recorded.get(key, defaults[key])
        if isinstance(theirs, tuple):
            theirs = list(theirs)
        if theirs != mine[key] and not (key in FILE_OPTIONS and _same_file(theirs, mine[key])):
            out.append(f"{key}: {theirs!r} -> {mine[key]!r}")
    return out


#: Options that name a file: the same file spelled another way (relative, absolute, through a
#: link) is the same option.
FILE_OPTIONS: frozenset[str] = frozenset({"pretrained", "init_from"})


def _same_file(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are paths (not None, not "imagenet") resolving to one file."""
    if not (isinstance(a, str) and isinstance(b, str)) or "imagenet" in (a, b):
        return False
    return os.path.realpath(a) == os.path.realpath(b)
