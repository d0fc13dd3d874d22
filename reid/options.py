"""The choices and the shared option declarations of training, torch-free.

``reid train --help`` imports this module (through :mod:`reid.engine.config`) without
loading torch; the model, the data pipeline and the losses import their constants from here,
so each list of choices and each option shared by two configurations is written once.
"""

from __future__ import annotations

from common.options import Option

#: torchvision backbones the model is built on, and the width of their last feature map.
ARCH_DIMS: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048,
                             "mobilenet_v2": 1280}
#: Which feature retrieval uses: the pooled feature (AlignedReID) or the same after the BN neck (BoT).
RETRIEVAL_FEATURES: tuple[str, ...] = ("global", "bn")
#: What a training batch is made of (see :class:`reid.engine.config.TrainConfig`).
TRAIN_ON: tuple[str, ...] = ("clean", "occluded", "both", "augment")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
SCHEDULES: tuple[str, ...] = ("step", "cosine")
#: Random Erasing's fills ("mixed": one of the first three per box; "patch": the same box of another
#: identity's training image); reid.data.transforms uses this list.
ERASING_FILLS: tuple[str, ...] = ("mean", "black", "random", "mixed", "patch")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
#: Evaluation choices (``reid eval``, ``rank``, ``study``; see :mod:`reid.engine.eval_config`).
GALLERY_CHOICES: tuple[str, ...] = ("clean", "all")
DISTANCE_CHOICES: tuple[str, ...] = ("global", "local", "global+local")
METRIC_CHOICES: tuple[str, ...] = ("euclidean", "cosine")
#: `reid search` ranks by the global feature, or adds the aligned local distance (no local alone).
SEARCH_DISTANCES: tuple[str, ...] = ("global", "global+local")

#: The global distance of ``reid eval`` and ``reid search`` (EvalConfig, SearchConfig).
METRIC = Option("euclidean", "Distance on the global feature.", choices=METRIC_CHOICES)

# Options of the multi-task loss, shared by LossConfig and TrainConfig.
ALPHA = Option(0.8, "L = alpha * L_AlignedReID + (1 - alpha) * L_OBC; 1 = plain AlignedReID.",
               low=0.0, high=1.0, note="(1 = plain AlignedReID)")
MARGIN = Option(0.3, "TriHard margin.", low=0.0, low_open=True)
LABEL_SMOOTHING = Option(0.1, "Epsilon of the identity cross-entropy (0 = none).", low=0.0, high=1.0, high_open=True)
EXCLUDE_TWIN_POSITIVE = Option(False, "Never mine an image's own clean/occluded twin as its hardest positive.",
                               flag=True)
CLEAN_ANCHORS_ONLY = Option(False, "Occluded images are not TriHard anchors (they still feed the identity and OBC "
                                   "losses).", flag=True)
VISIBILITY_WEIGHT = Option(0.0, "Weight of the per-stripe visibility loss, supervised by the occluder boxes; > 0 adds "
                                "the visibility head (used by `reid eval --visibility`), 0 = no head.",
                           low=0.0, note="(0 = no visibility head)")
TWIN_WEIGHT = Option(0.0, "Weight of the twin-consistency loss: each occluded copy's BN feature pulled toward its clean "
                          "twin's (detached) with --train-on both; 0 = off.", low=0.0, note="(0 = off)")
