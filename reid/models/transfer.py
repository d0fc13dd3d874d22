"""Start a run from a re-ID checkpoint (``reid train --init-from``): cross-dataset fine-tuning.

Every part of a checkpoint this project wrote is loaded (backbone, BN neck, stripe branch, OBC
head, visibility head), except the identity classifier: its rows are the identities of the
file the checkpoint was trained on, so the new run makes a fresh one for its own identities
(the usual way to use a model trained on a large set on a smaller one).

The network's shape must be the checkpoint's: the same backbone, last stride, stripes and
local dimension. A visibility head is the one part that may differ: a checkpoint without one
leaves the new run's head at its initialisation; a new run without one drops the
checkpoint's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from common.errors import BadInputError
from reid.models.aligned import AlignedReID, ModelConfig
from reid.models.checkpoint import Checkpoint, load_checkpoint

logger = logging.getLogger(__name__)

#: The :class:`ModelConfig` fields that decide the weights' shapes, with their ``reid train`` option.
_SHAPE_FIELDS: dict[str, str] = {"arch": "--arch", "last_stride": "--last-stride", "num_stripes": "--stripes",
                                 "local_dim": "", "neck_bn": ""}
#: Parameters never carried over: the identity classifier belongs to the checkpoint's identities.
_CLASSIFIER_PREFIX = "classifier."
_VISIBILITY_PREFIX = "visibility_head."


def shape_differences(mine: ModelConfig, theirs: ModelConfig) -> list[str]:
    """The shape-deciding fields on which ``mine`` differs from ``theirs``, as the options that set them."""
    out = []
    for name, option in _SHAPE_FIELDS.items():
        value = getattr(theirs, name)
        if getattr(mine, name) != value:
            out.append(f"{option or name} {value}")
    return out


def read_init_checkpoint(config: ModelConfig, path: str | Path) -> Checkpoint:
    """Read the checkpoint at ``path`` and check that it fits a network of ``config``.

    Raises:
        BadInputError: not a readable checkpoint, or one of another network shape (the message
            names the options to pass).
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    differences = shape_differences(config, checkpoint.config)
    if differences:
        raise BadInputError(f"--init-from {path}: made for another network ({', '.join(differences)}); pass "
                            f"those options to fine-tune it")
    return checkpoint


def init_from_checkpoint(model: AlignedReID, checkpoint: Checkpoint) -> list[str]:
    """Copy every parameter and buffer of ``checkpoint`` (from :func:`read_init_checkpoint`)
    into ``model`` except the identity classifier (left as initialised for ``model``'s identities).

    Returns:
        The names of the state-dict entries loaded.
    """
    path = checkpoint.path
    own = model.state_dict()
    loaded = {key: value for key, value in checkpoint.state_dict.items()
              if not key.startswith(_CLASSIFIER_PREFIX) and key in own}
    if any(key.startswith(_VISIBILITY_PREFIX) and key not in own for key in checkpoint.state_dict):
        logger.info("--init-from %s: its visibility head is left out (this run has none)", path)
    if any(key.startswith(_VISIBILITY_PREFIX) and key not in loaded for key in own):
        logger.info("--init-from %s: it has no visibility head; this run's starts from its initialisation", path)
    with torch.no_grad():
        for key, value in loaded.items():
            own[key].copy_(value)
    logger.info("--init-from %s: %d tensors loaded (%s, trained on %d identities); a new identity classifier for %d",
                path, len(loaded), checkpoint.config.arch, checkpoint.config.num_classes, model.config.num_classes)
    return sorted(loaded)
