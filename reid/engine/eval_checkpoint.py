"""The checkpoint side of ``reid eval`` (:func:`reid.engine.evaluator.run_eval`): loading it
for an evaluation, and what the report says about it.

* The input size and normalisation come from the checkpoint, not the evaluated file.
* A checkpoint trained on a file with another fingerprint is said in one warning line: a
  cross-dataset evaluation (train on Market-1501, test on Occluded-REID), or, for two files
  of the same source, splits that may differ (query identities seen in training).
* A checkpoint whose OBC head was not trained (alpha = 1,
  :func:`reid.models.checkpoint.obc_head_trained`) reports no occlusion probability: its
  rows' ``occ_prob`` and ``occ_prob_mean`` are None and ``obc_head_trained`` is False (the
  table prints "-" and one line saying why, :func:`reid.engine.report.format_table`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the evaluator imports this module; the types are for reading only
    import torch

    from occsim.store import StoreInfo
    from reid.engine.evaluator import EvalReport
    from reid.models.aligned import AlignedReID
    from reid.models.inference import InferenceSpec

logger = logging.getLogger(__name__)


def load_for_eval(checkpoint: Path, data: Path, store: "StoreInfo",
                  device: "torch.device") -> tuple["AlignedReID", "InferenceSpec", bool]:
    """The network (eval mode, on ``device``), its spec, and whether it was trained on another
    file than ``data`` (``store``: that file, already read); the latter said in one warning line.

    Raises:
        BadInputError: as :func:`reid.models.inference.load_inference_model`.
    """
    from reid.models.inference import load_inference_model

    model, spec = load_inference_model(checkpoint, device=device)
    cross_dataset = spec.dataset_fingerprint != store.fingerprint
    if cross_dataset:
        logger.warning(
            "cross-dataset evaluation: %s was trained on data with fingerprint %s, %s (source %s) has %s; "
            "input size %dx%d from the checkpoint (if both files come from one source, the splits may differ)",
            checkpoint, spec.dataset_fingerprint[:12] or "(none)", data, store.source,
            store.fingerprint[:12], *spec.input_size,
        )
    return model, spec, cross_dataset


def record_checkpoint(report: "EvalReport", checkpoint: Path, spec: "InferenceSpec", cross_dataset: bool) -> None:
    """Write what ``report`` says about the checkpoint: its path, training-file fingerprint,
    ``cross_dataset`` and ``obc_head_trained``; drop the occlusion probabilities of an
    untrained OBC head."""
    report.checkpoint = str(checkpoint)
    report.checkpoint_fingerprint = spec.dataset_fingerprint
    report.cross_dataset = cross_dataset
    report.obc_head_trained = spec.obc_head_trained
    if spec.obc_head_trained is False:
        for row in report.rows:
            row.occ_prob, row.occ_prob_mean = None, None
