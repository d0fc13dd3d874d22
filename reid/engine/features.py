"""Feature extraction from the HDF5 splits: global and local features of chosen rows."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from reid.data.loaders import build_eval_loader
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

#: (H, W) when a checkpoint does not record its training input size: the usual re-ID size.
DEFAULT_INPUT_SIZE: tuple[int, int] = (256, 128)


@dataclass
class Features:
    """Features of ``len(rows)`` images of one split, in the order of ``rows``.

    Attributes:
        global_feat: shape [N, D] float32.
        local_feat: shape [N, H, C] float32 (H stripes, top to bottom).
        pids: shape [N] int32, identities.
        camids: shape [N] int16, cameras.
        rows: shape [N] int64, the rows of the split these features belong to.
        visibility: shape [N, H] float32, the visibility head's probability that each stripe
            is visible (sigmoid of ``visibility_logits``); None for a model without the head.
        occ_prob: shape [N] float32, the OBC head's probability that the image is occluded
            (softmax of ``occ_logits``, class 1); None when not extracted.
    """

    global_feat: np.ndarray
    local_feat: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    rows: np.ndarray
    visibility: np.ndarray | None = None
    occ_prob: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index: np.ndarray) -> "Features":
        """The features at positions ``index`` (positions in this object, not split rows)."""
        return Features(
            global_feat=self.global_feat[index],
            local_feat=self.local_feat[index],
            pids=self.pids[index],
            camids=self.camids[index],
            rows=self.rows[index],
            visibility=None if self.visibility is None else self.visibility[index],
            occ_prob=None if self.occ_prob is None else self.occ_prob[index],
        )


def input_size_from_extra(extra: Mapping[str, Any] | None) -> tuple[int, int]:
    """The training input size (H, W) a checkpoint's ``extra`` records, else 256x128.

    Accepts ``extra["input_size"]`` as [H, W] or "HxW", or the same inside
    ``extra["config"]`` (the training configuration).
    """
    candidates = []
    if extra:
        candidates.append(extra.get("input_size"))
        config = extra.get("config")
        if isinstance(config, Mapping):
            candidates += [config.get("input_size"), config.get("size")]
    for value in candidates:
        size = _parse_size(value)
        if size is not None:
            return size
    logger.info("the checkpoint records no input size; using %dx%d", *DEFAULT_INPUT_SIZE)
    return DEFAULT_INPUT_SIZE


def _parse_size(value: Any) -> tuple[int, int] | None:
    if isinstance(value, str) and "x" in value.lower():
        value = value.lower().split("x")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            h, w = int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
        if h > 0 and w > 0:
            return (h, w)
    return None


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    # float16 autocast only on CUDA: on the CPU bfloat16 autocast is slower for convs and
    # would change the numbers for no gain.
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def extract_features(
    model: nn.Module,
    h5_path: str | Path,
    split: str,
    rows: Sequence[int] | np.ndarray,
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    flip: bool = False,
    amp: bool = False,
    workers: int = 0,
    desc: str | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Features:
    """Global and local features of ``rows`` of ``split``, in the order of ``rows``.

    The model runs in eval mode under ``torch.inference_mode``; its previous train/eval mode
    is restored afterwards. With ``flip`` each image's features are averaged with those of
    its horizontal mirror; the local stripes are averaged stripe by stripe, since a
    horizontal flip keeps the top-to-bottom stripe order.

    Args:
        model: returns a :class:`reid.models.aligned.ModelOutput`; must already be on ``device``
            (or is moved there, and to channels-last).
        h5_path: the occluded-reid HDF5 file.
        split: "train", "query" or "gallery".
        rows: row indices into the split, shape [N].
        input_size: (H, W) the images are resized to.
        batch_size: images per forward pass.
        device: where the model runs.
        flip: average with the mirrored image's features.
        amp: float16 autocast, on CUDA only (ignored on the CPU).
        workers: data-loader worker processes.
        desc: progress-bar label (default: the split name).
        mean, std: the normalisation the model was trained with (its checkpoint's, see
            :class:`reid.models.inference.InferenceSpec`), in [0, 1] units.

    Returns:
        :class:`Features` (float32 on the CPU), with the per-image OBC occlusion probability
        and, for a model with a visibility head, the per-stripe visible probabilities (both
        averaged with the mirror image's under ``flip``).
    """
    device = torch.device(device)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    loader = build_eval_loader(h5_path, split, rows, size=tuple(input_size), batch_size=batch_size, workers=workers,
                               mean=tuple(mean), std=tuple(std))
    from reid.models.checkpoint import retrieval_feature_of  # reid.models imports this module

    was_training = model.training
    # channels_last: oneDNN's (and cuDNN's) fast layout; 1.89x a MobileNetV2 forward at 256x128 on one
    # CPU thread (benchmarks/bench_cpu_channels_last.py --mode eval). The trainer's model already is.
    model.to(device, memory_format=torch.channels_last)
    model.eval()
    feature = retrieval_feature_of(model)  # once per call, not per batch
    globals_: list[torch.Tensor] = []
    locals_: list[torch.Tensor] = []
    pids: list[np.ndarray] = []
    camids: list[np.ndarray] = []
    visibility: list[torch.Tensor] = []
    occ_probs: list[torch.Tensor] = []
    try:
        with torch.inference_mode(), tqdm(total=len(rows), desc=desc or split, unit="img", disable=None, leave=False) as bar:
            for batch in loader:
                # Batch.to normalises the uint8 images on the device (one affine map per batch).
                batch = batch.to(device, non_blocking=True)
                images = batch.images
                g, l, v, o = _forward(model, images, feature, device, amp)
                if flip:
                    gf, lf, vf, of = _forward(model, images.flip(dims=[3]), feature, device, amp)
                    g, l, o = (g + gf) / 2, (l + lf) / 2, (o + of) / 2
                    v = None if v is None or vf is None else (v + vf) / 2
                globals_.append(g.cpu())
                locals_.append(l.cpu())
                occ_probs.append(o.cpu())
                if v is not None:
                    visibility.append(v.cpu())
                pids.append(batch.pids.cpu().numpy())
                camids.append(batch.camids.cpu().numpy())
                bar.update(len(images))
    finally:
        model.train(was_training)
    if globals_:
        global_feat = torch.cat(globals_).numpy()
        local_feat = torch.cat(locals_).numpy()
    else:
        global_feat = np.zeros((0, 0), dtype=np.float32)
        local_feat = np.zeros((0, 0, 0), dtype=np.float32)
    return Features(
        global_feat=global_feat,
        local_feat=local_feat,
        pids=np.concatenate(pids).astype(np.int32) if pids else np.zeros(0, np.int32),
        camids=np.concatenate(camids).astype(np.int16) if camids else np.zeros(0, np.int16),
        rows=rows,
        visibility=torch.cat(visibility).numpy() if visibility and len(visibility) == len(globals_) else None,
        occ_prob=torch.cat(occ_probs).numpy() if occ_probs else np.zeros(0, np.float32),
    )


def _forward(
    model: nn.Module, images: torch.Tensor, feature: str, device: torch.device, amp: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(global [B, D], local [B, H, C]) as float32; "global" is the retrieval ``feature`` of
    :meth:`reid.models.aligned.ModelOutput.retrieval` ("global" or "bn");
    then the visible probabilities [B, H] (None without a visibility head) and the OBC
    occluded probability [B], float32."""
    with _autocast(device, amp):
        out = model(images.contiguous(memory_format=torch.channels_last))
    return out.retrieval(feature).float(), out.local_feat.float(), out.visible_probability(), out.occluded_probability()
