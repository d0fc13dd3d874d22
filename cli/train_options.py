"""The training options `reid train` and `reid study` share, declared once.

`reid study` applies them to every cell of its grid; `reid train` adds the per-run options
(data, out, alpha, train-on, validation, resume).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import click

from cli.common import parse_numbers, parse_size

F = TypeVar("F", bound=Callable[..., Any])

SHARED_TRAINING_OPTIONS = (
    click.option("--arch", type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet101"]), default="resnet50",
                 show_default=True, help="ResNet backbone (resnet18 for CPU runs)."),
    click.option("--pretrained", default="imagenet", show_default=True, metavar="imagenet|none|PATH",
                 help="Backbone initialisation: torchvision ImageNet weights (cache or download; random init with a "
                      "warning when offline), none, or a torchvision state-dict file."),
    click.option("--epochs", type=click.IntRange(min=1), default=120, show_default=True),
    click.option("--batch-p", type=click.IntRange(min=2), default=16, show_default=True,
                 help="Identities per batch (per process under torchrun)."),
    click.option("--batch-k", type=click.IntRange(min=1), default=4, show_default=True,
                 help="Images per identity; with --train-on both each comes with its occluded copy."),
    click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True),
    click.option("--lr", type=float, default=3.5e-4, show_default=True, help="Base learning rate."),
    click.option("--weight-decay", type=float, default=5e-4, show_default=True),
    click.option("--warmup-epochs", type=click.IntRange(min=0), default=10, show_default=True,
                 help="Linear warm-up from lr/100 to lr over this many epochs."),
    click.option("--schedule", type=click.Choice(["step", "cosine"]), default="step", show_default=True,
                 help="After warm-up: x0.1 at each --milestones epoch, or cosine to 0."),
    click.option("--milestones", default="40,70", show_default=True, help="Step-schedule epochs, comma-separated."),
    click.option("--margin", type=float, default=0.3, show_default=True, help="TriHard margin."),
    click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.1, show_default=True),
    click.option("--size", default="256x128", show_default=True, metavar="HxW", help="Network input size."),
    click.option("--last-stride", type=click.Choice(["1", "2"]), default="1", show_default=True,
                 help="Stride of layer4: 1 doubles the last feature map's resolution (BoT) at ~1.7x the "
                      "backbone cost for resnet18."),
    click.option("--stripes", "num_stripes", type=click.IntRange(min=1), default=8, show_default=True,
                 help="Local stripes of the aligned branch (at most the feature map's height)."),
    click.option("--random-erasing", is_flag=True, help="Random Erasing augmentation."),
    click.option("--occlusion-p", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
                 help="--train-on augment: probability that an image is read as one of its occluded copies."),
    click.option("--occlusion-ramp-epochs", type=click.IntRange(min=0), default=0, show_default=True,
                 help="--train-on augment: ramp the probability from 0 to --occlusion-p over this many epochs "
                      "(0 = no ramp)."),
    click.option("--retrieval-feature", type=click.Choice(["global", "bn"]), default="global", show_default=True,
                 help="Feature evaluation retrieves with: the pooled feature (AlignedReID) or the same after the "
                      "BN neck (BoT's BNNeck); recorded in the checkpoint."),
    click.option("--exclude-twin-positive", is_flag=True,
                 help="Never mine an image's own clean/occluded twin as its hardest positive."),
    click.option("--clean-anchors-only", is_flag=True,
                 help="Occluded images are not TriHard anchors (they still feed the identity and OBC losses)."),
    click.option("--visibility-weight", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
                 help="Weight of the per-stripe visibility loss, supervised by the occluder boxes; > 0 adds the "
                      "visibility head (used by `reid eval --visibility`), 0 = no head."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
    click.option("--amp/--no-amp", default=None,
                 help="Mixed precision (bf16, or fp16 with loss scaling); default on with CUDA, CUDA only."),
    click.option("--workers", type=click.IntRange(min=0), default=4, show_default=True, help="Data-loader processes."),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option("--max-steps-per-epoch", type=click.IntRange(min=1), default=None,
                 help="Cut every epoch to this many steps (tiny runs and demos)."),
)
SHARED_NAMES: tuple[str, ...] = (
    "arch", "pretrained", "epochs", "batch_p", "batch_k", "optimizer", "lr", "weight_decay", "warmup_epochs",
    "schedule", "milestones", "margin", "label_smoothing", "size", "last_stride", "num_stripes", "random_erasing",
    "occlusion_p", "occlusion_ramp_epochs", "retrieval_feature", "exclude_twin_positive", "clean_anchors_only",
    "visibility_weight", "device", "amp",
    "workers", "seed", "max_steps_per_epoch",
)


def shared_training_options(func: F) -> F:
    """Decorate a Click command with every option of :data:`SHARED_TRAINING_OPTIONS`."""
    for option in reversed(SHARED_TRAINING_OPTIONS):
        func = option(func)
    return func


def int_list(value: str, option: str) -> tuple[int, ...]:
    """"40,70" -> (40, 70)."""
    return parse_numbers(value, option, int, "integers", "0,1,2")


def pop_training_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Remove the shared options from ``options`` and return them as TrainConfig keyword arguments."""
    raw = {name: options.pop(name) for name in SHARED_NAMES}
    pretrained = raw.pop("pretrained")
    milestones = raw.pop("milestones")
    size = raw.pop("size")
    last_stride = raw.pop("last_stride")
    return {
        **raw,
        "pretrained": None if pretrained.lower() == "none" else pretrained,
        "milestones": int_list(milestones, "--milestones"),
        "input_size": parse_size(size),
        "last_stride": int(last_stride),
    }
