"""Checkpoints: weights + model configuration + dataset fingerprint, atomic and ``weights_only``.

A checkpoint is a ``torch.save``d dict holding only tensors and plain Python types
(dict/list/tuple/str/int/float/bool/None), so ``torch.load(path, weights_only=True)`` reads it
without unpickling arbitrary objects::

    {"format": "occluded-reid-checkpoint", "format_version": 1, "package_version": str,
     "model_config": ModelConfig.to_dict(), "state_dict": {name: tensor},
     "dataset_fingerprint": str, "extra": dict (``obc_head_trained``: see :func:`obc_head_trained`),
     "optimizer_state": dict | None, "scheduler_state": dict | None,
     "scaler_state": dict | None, "rng_state": dict | None}

``load_model(path)`` rebuilds the network from the file alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.atomic import atomic_open
from common.errors import BadInputError
from reid import __version__
from reid.models.aligned import AlignedReID, ModelConfig

CHECKPOINT_FORMAT = "occluded-reid-checkpoint"
CHECKPOINT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``state_dict`` maps parameter/buffer names to CPU (or map_location) tensors."""

    path: Path
    config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    dataset_fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    scaler_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    package_version: str = ""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def retrieval_feature_of(model: nn.Module) -> str:
    """The feature ``model`` retrieves with, "global" or "bn" (``ModelConfig.retrieval_feature``;
    wrappers seen through; "global" for a model without that config, e.g. a hand-built test net)."""
    return str(getattr(getattr(unwrap_model(model), "config", None), "retrieval_feature", "global"))


def _check_plain(value: Any, where: str) -> None:
    """Refuse, before writing, anything that ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, torch.Tensor) or isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, _PLAIN):
                raise TypeError(f"checkpoint{where}: key {key!r} of type {type(key).__name__} is not plain")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint{where}: {type(value).__name__} is not a tensor or plain Python value "
        "(torch.load(weights_only=True) could not read it back); convert it first"
    )


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: ModelConfig,
    dataset_fingerprint: str,
    extra: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    scheduler_state: dict[str, Any] | None = None,
    scaler_state: dict[str, Any] | None = None,
    rng_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, fsync, ``os.replace``).

    Args:
        path: destination file; its folder is created if needed.
        model: the network (DDP / compiled wrappers are unwrapped).
        config: the configuration ``model`` was built from.
        dataset_fingerprint: the HDF5 file's ``fingerprint`` attribute.
        extra: plain metadata (epoch, step, metrics, training arguments...).
        optimizer_state, scheduler_state, scaler_state: their ``state_dict()``.
        rng_state: random generator states as tensors / plain values (numpy's legacy state
            tuple holds an ndarray: convert it to a tensor or list first).

    Raises:
        TypeError: a value that ``weights_only`` loading could not read back (nothing written).
    """
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "package_version": __version__,
        "model_config": config.to_dict(),
        "state_dict": state,
        "dataset_fingerprint": str(dataset_fingerprint),
        "extra": dict(extra or {}),
        "optimizer_state": optimizer_state,
        "scheduler_state": scheduler_state,
        "scaler_state": scaler_state,
        "rng_state": rng_state,
    }
    _check_plain(payload, "")
    # Also on KeyboardInterrupt no half-written temporary file is left behind; those of killed
    # runs are swept.
    with atomic_open(path, "wb", fsync=True) as handle:
        torch.save(payload, handle)
    return path


def check_state_dict(config: ModelConfig, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Raise BadInputError unless ``state_dict`` fits the network that ``config`` describes.

    The reference network is built on the meta device (no memory, no initialisation cost).
    """
    with torch.device("meta"):
        expected = AlignedReID(config).state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    problem = ""
    if missing:
        problem = f"missing {missing[:3]}"
    elif unexpected:
        problem = f"unexpected {unexpected[:3]}"
    else:
        for key, tensor in expected.items():
            if tuple(state_dict[key].shape) != tuple(tensor.shape):
                problem = f"{key} has shape {tuple(state_dict[key].shape)}, expected {tuple(tensor.shape)}"
                break
    if problem:
        raise BadInputError(
            f"checkpoint {source} was made for another architecture than its recorded "
            f"{config.arch} config ({problem}); use a checkpoint written by 'reid train' of this version"
        )


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    expected_config: ModelConfig | None = None,
) -> Checkpoint:
    """Read and validate a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint file.
        map_location: where tensors go (as in ``torch.load``).
        expected_config: when given (e.g. resuming a run), the checkpoint's configuration must
            equal it.

    Raises:
        BadInputError: missing file, damaged or foreign file, unsupported format version, a
            state dict that does not fit the recorded configuration, or a configuration that
            differs from ``expected_config``.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such checkpoint file; give a checkpoint written by 'reid train'")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip errors, unpickling refusals, EOF: all mean "not readable"
        raise BadInputError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}); it is damaged or not a "
            "'reid train' checkpoint, use another one"
        ) from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(f"{path}: not an occluded-reid checkpoint; give a checkpoint written by 'reid train'")
    version = raw.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise BadInputError(
            f"{path}: checkpoint format_version {version!r} is not supported (this version reads "
            f"{CHECKPOINT_VERSION}); use the matching version of this package"
        )
    try:
        config = ModelConfig.from_dict(raw.get("model_config"))
    except BadInputError as exc:
        raise BadInputError(f"{path}: {exc}; the checkpoint is damaged or from another version") from exc
    state = raw.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BadInputError(f"{path}: checkpoint has no valid state_dict; it is damaged, use another one")
    fingerprint = raw.get("dataset_fingerprint")
    extra = raw.get("extra")
    if not isinstance(fingerprint, str) or not isinstance(extra, dict):
        raise BadInputError(f"{path}: checkpoint metadata is damaged; use another checkpoint")
    check_state_dict(config, state, path)
    if expected_config is not None and config != expected_config:
        diffs = [
            f"{k}={v!r} (expected {expected_config.to_dict()[k]!r})"
            for k, v in config.to_dict().items()
            if expected_config.to_dict()[k] != v
        ]
        raise BadInputError(
            f"checkpoint {path} was made for another architecture ({', '.join(diffs)}); "
            "use the same model options as the run that wrote it"
        )
    return Checkpoint(
        path=path,
        config=config,
        state_dict=state,
        dataset_fingerprint=fingerprint,
        extra=extra,
        optimizer_state=raw.get("optimizer_state"),
        scheduler_state=raw.get("scheduler_state"),
        scaler_state=raw.get("scaler_state"),
        rng_state=raw.get("rng_state"),
        package_version=str(raw.get("package_version", "")),
    )


def obc_head_trained(extra: Mapping[str, Any] | None) -> bool | None:
    """Whether the OBC head of a checkpoint was trained, from its ``extra`` dict.

    ``reid train`` records it as ``extra["obc_head_trained"]`` (True when alpha < 1, or when
    ``--init-from`` brought a trained head that alpha = 1 then kept frozen). Older checkpoints
    fall back to the recorded ``extra["config"]["alpha"] < 1``; an alpha = 1 run started with
    ``--init-from`` may carry a trained head, so it stays unknown.

    The visibility head needs no such record: ``reid train`` builds one only with
    ``--visibility-weight`` > 0 (``ModelConfig.visibility_head``), and then its loss, a term
    outside alpha, always trains it (``--init-from`` keeps a checkpoint's head only for such a run).

    Returns:
        True or False; None when the checkpoint does not tell (keep reporting the head as before).
    """
    if not extra:
        return None
    if "obc_head_trained" in extra:
        recorded = extra["obc_head_trained"]
        return recorded if isinstance(recorded, bool) else None
    config = extra.get("config")
    alpha = config.get("alpha") if isinstance(config, Mapping) else None
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        return None
    if alpha < 1:
        return True
    return None if config.get("init_from") else False


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AlignedReID, Checkpoint]:
    """Rebuild the network from a checkpoint alone; returned in eval mode on ``device``.

    Raises:
        BadInputError: as :func:`load_checkpoint`, or weights that do not load strictly.
    """
    checkpoint = load_checkpoint(path, map_location="cpu")
    # Built on the meta device and given the file's tensors (assign): a random initialisation
    # that the weights replace anyway costs about 0.6 s for resnet50.
    with torch.device("meta"):
        model = AlignedReID(checkpoint.config)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(
            f"checkpoint {path} was made for another architecture ({first}); "
            "use a checkpoint written by 'reid train' of this version"
        ) from exc
    model.to(torch.device(device))
    model.eval()
    return model, checkpoint
