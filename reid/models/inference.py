"""One way to load a model for inference: the network plus a typed :class:`InferenceSpec`.

A checkpoint's ``extra`` dict is loose (the trainer's options, the step, the metrics); what
inference needs from it -- input size, normalisation, feature shapes -- is read here once,
so ``reid eval``, ``rank``, ``saliency``, ``study``, ``embed``, ``search`` and ``export``
all feed the model the same way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid.engine.features import input_size_from_extra
from reid.models.aligned import AlignedReID
from reid.models.checkpoint import Checkpoint, load_model, obc_head_trained

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceSpec:
    """How to feed a trained model and what it returns.

    Attributes:
        checkpoint: the file the model was loaded from.
        arch: backbone name ("resnet50", ...).
        input_size: (H, W) the model was trained at; images are resized to it.
        mean, std: per-channel RGB normalisation in [0, 1] units: ``(x / 255 - mean) / std``.
        global_dim: D of the global feature, shape [N, D].
        num_stripes: H of the local features, shape [N, H, local_dim], at ``input_size``.
        local_dim: C of each local stripe feature.
        dataset_fingerprint: fingerprint of the HDF5 file the model was trained on.
        package_version: version of the package that wrote the checkpoint.
        obc_head_trained: whether the OBC head (the occlusion probability) was trained: False
            for alpha = 1, None when the checkpoint does not say
            (:func:`reid.models.checkpoint.obc_head_trained`).
    """

    checkpoint: Path
    arch: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    global_dim: int
    num_stripes: int
    local_dim: int
    dataset_fingerprint: str
    package_version: str
    obc_head_trained: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists for tuples, the path as a string."""
        data = asdict(self)
        data["checkpoint"] = str(self.checkpoint)
        for key in ("input_size", "mean", "std"):
            data[key] = list(data[key])
        return data


def _triple(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3:
        try:
            return tuple(float(v) for v in value)  # type: ignore[return-value]
        except (TypeError, ValueError):
            return None
    return None


def normalization_from_extra(extra: Mapping[str, Any] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) a checkpoint's ``extra`` records (``mean``/``std`` there or in its
    ``config``), else ImageNet's, which every training run of this package uses."""
    sources = [extra or {}]
    if extra and isinstance(extra.get("config"), Mapping):
        sources.append(extra["config"])
    for source in sources:
        mean, std = _triple(source.get("mean")), _triple(source.get("std"))
        if mean is not None and std is not None and all(s > 0 for s in std):
            return mean, std
    return IMAGENET_MEAN, IMAGENET_STD


def num_stripes_at(model: AlignedReID, input_size: tuple[int, int]) -> int:
    """H of ``local_feat`` for an input of ``input_size``: the configured stripe count, or with
    ``num_stripes=None`` the feature-map height, found by shape inference on the meta device."""
    if model.config.num_stripes is not None:
        return int(model.config.num_stripes)
    with torch.device("meta"):
        probe = AlignedReID(model.config)
        return int(probe.backbone(torch.empty(1, 3, *input_size)).shape[2])


def spec_from_checkpoint(model: AlignedReID, checkpoint: Checkpoint) -> InferenceSpec:
    """The :class:`InferenceSpec` of a loaded checkpoint (input size as
    :func:`reid.engine.features.input_size_from_extra`, 256x128 when not recorded)."""
    input_size = input_size_from_extra(checkpoint.extra)
    mean, std = normalization_from_extra(checkpoint.extra)
    config = checkpoint.config
    return InferenceSpec(
        checkpoint=Path(checkpoint.path),
        arch=config.arch,
        input_size=input_size,
        mean=tuple(mean),  # type: ignore[arg-type]
        std=tuple(std),  # type: ignore[arg-type]
        global_dim=config.global_dim,
        num_stripes=num_stripes_at(model, input_size),
        local_dim=config.local_dim,
        dataset_fingerprint=checkpoint.dataset_fingerprint,
        package_version=checkpoint.package_version,
        obc_head_trained=obc_head_trained(checkpoint.extra),
    )


def load_inference_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AlignedReID, InferenceSpec]:
    """The network (eval mode, on ``device``) and its :class:`InferenceSpec`, from a checkpoint alone.

    Raises:
        BadInputError: as :func:`reid.models.checkpoint.load_model`.
    """
    model, checkpoint = load_model(path, device=device)
    return model, spec_from_checkpoint(model, checkpoint)


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex): names the exact weights that features came from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
