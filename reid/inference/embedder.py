"""``reid.Embedder``: a trained model as a function from images to features, in-process.

    from reid import Embedder
    embedder = Embedder("runs/obc/best.pt", device="auto")
    out = embedder.embed(crops)        # uint8 RGB arrays [h, w, 3] or image paths
    out.global_feat                    # [N, D]
    out.occlusion                      # [N], predicted probability that each crop is occluded
                                       # (NaN when the checkpoint's OBC head was not trained)

Every image is resized to the checkpoint's input size and normalised with its mean/std
(:class:`reid.models.inference.InferenceSpec`), the path ``reid embed`` and ``reid search`` take.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common.errors import BadInputError
from reid.data.transforms import normalize_batch
from reid.inference.images import decode_file, fit_to_input
from reid.models.checkpoint import retrieval_feature_of
from reid.models.inference import InferenceSpec, load_inference_model


@dataclass
class Embeddings:
    """Features of N images, float32 numpy arrays on the CPU.

    Attributes:
        global_feat: shape [N, D], the retrieval feature (the one ``reid eval`` measures).
        local_feat: shape [N, H, C], one feature per horizontal stripe, top to bottom.
        occlusion: shape [N], the OBC head's probability that the image is occluded; NaN when
            the head was not trained (alpha = 1, ``InferenceSpec.obc_head_trained`` False).
    """

    global_feat: np.ndarray
    local_feat: np.ndarray
    occlusion: np.ndarray

    def __len__(self) -> int:
        return len(self.global_feat)


def forward_features(
    model: torch.nn.Module, images: torch.Tensor, spec: InferenceSpec, flip: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 images [B, 3, H, W] (already at ``spec.input_size``, on the model's device) ->
    (global [B, D], local [B, H, C], occlusion probability [B]) as float32; "global" is the
    model's retrieval feature, the one ``reid eval`` measures (``bn_feat`` for a model trained
    with ``--retrieval-feature bn``).

    With ``flip`` the features and the probability are averaged with those of the mirrored
    image (stripes stay in place: a horizontal flip keeps their top-to-bottom order).
    """
    # channels_last: oneDNN's (and cuDNN's) fast convolution layout, about 1.3x on the CPU here.
    x = normalize_batch(images, spec.mean, spec.std).contiguous(memory_format=torch.channels_last)
    feature = retrieval_feature_of(model)
    with torch.inference_mode():
        out = model(x)
        g, l, p = out.retrieval(feature).float(), out.local_feat.float(), out.occluded_probability()
        if flip:
            mirrored = model(x.flip(dims=[3]))
            g = (g + mirrored.retrieval(feature).float()) / 2
            l = (l + mirrored.local_feat.float()) / 2
            p = (p + mirrored.occluded_probability()) / 2
    return g, l, p


def to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 RGB arrays [H, W, 3] of one size -> uint8 tensor [B, 3, H, W]."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))


class Embedder:
    """A checkpoint loaded for inference (see the module docstring).

    Args:
        checkpoint: a checkpoint written by ``reid train``.
        device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
        batch_size: images per forward pass.
        flip: average each image's features with its mirror's.
    """

    def __init__(self, checkpoint: str | Path, device: str | torch.device = "auto", batch_size: int = 64,
                 flip: bool = False) -> None:
        from common.device import resolve_device

        if batch_size < 1:
            raise BadInputError(f"--batch-size {batch_size}: must be at least 1")
        self.device = resolve_device(device)
        self.model, self.spec = load_inference_model(checkpoint, device=self.device)
        self.model.to(memory_format=torch.channels_last)
        self.batch_size = int(batch_size)
        self.flip = bool(flip)

    def prepare(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """One image (uint8 array, or a path to decode) -> uint8 RGB [H, W, 3] at the input size.

        Raises:
            BadInputError: an unreadable file (named) or an array that is not an image.
        """
        if isinstance(image, (str, os.PathLike)):
            pixels, reason = decode_file(os.fspath(image), self.spec.input_size)
            if pixels is None:
                raise BadInputError(f"{image}: {reason}; replace or remove the file")
            return pixels
        return fit_to_input(image, self.spec.input_size)

    def embed_prepared(self, images: torch.Tensor) -> Embeddings:
        """uint8 [B, 3, H, W] at the input size (any device) -> :class:`Embeddings` of the batch."""
        g, l, p = forward_features(self.model, images.to(self.device, non_blocking=True), self.spec, self.flip)
        occlusion = p.cpu().numpy()
        if self.spec.obc_head_trained is False:  # an untrained head's output is no probability
            occlusion = np.full_like(occlusion, np.nan)
        return Embeddings(global_feat=g.cpu().numpy(), local_feat=l.cpu().numpy(), occlusion=occlusion)

    def embed(self, images: Sequence[np.ndarray | str | os.PathLike]) -> Embeddings:
        """Features of ``images`` (uint8 RGB arrays [h, w, 3] / grayscale [h, w], or paths), in order."""
        parts = [
            self.embed_prepared(to_batch([self.prepare(im) for im in images[i : i + self.batch_size]]))
            for i in range(0, len(images), self.batch_size)
        ]
        if not parts:
            s = self.spec
            return Embeddings(np.zeros((0, s.global_dim), np.float32), np.zeros((0, s.num_stripes, s.local_dim), np.float32),
                              np.zeros(0, np.float32))
        return Embeddings(
            global_feat=np.concatenate([p.global_feat for p in parts]),
            local_feat=np.concatenate([p.local_feat for p in parts]),
            occlusion=np.concatenate([p.occlusion for p in parts]),
        )
