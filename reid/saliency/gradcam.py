"""Grad-CAM (Selvaraju et al. 2017) on the last convolutional block of a re-ID model.

Grad-CAM, for activations A [N, C, h, w] of the target layer and the gradient G = dS/dA of a
scalar score S per image::

    weights[n, c] = mean over (y, x) of G[n, c, y, x]          (global-average-pooled gradient)
    cam[n]        = ReLU(sum_c weights[n, c] * A[n, c])          shape [h, w]
    cam[n]       /= max(cam[n])                                   in [0, 1]; an all-zero map stays 0

The map is divided by its maximum, not min-max stretched: a cell with no positive evidence stays
exactly 0, so the share of saliency *mass* inside a box (:func:`reid.saliency.mass.box_mass`)
means what it says.

Target layer: ``model.backbone.layer4`` (AlignedReID's last residual block, whose output is the
feature map both the global and the local branch pool), else ``model.backbone.features``
(MobileNetV2's trunk, the same role), else ``model.layer4``, else the last
``nn.Conv2d`` of the model (:func:`find_target_layer`).

Targets (the score S whose gradient is taken). A re-ID embedding model has no class score for
the query's identity, so:

* ``"similarity"`` (default): S = cosine(global_feat(occluded image), global_feat(clean image)),
  the clean embedding computed without gradient from the clean original of the same query
  (the ``clean_index`` row). The map shows which regions of the occluded image make the model
  recognise *this* person; a model that relies on the occluder puts mass on the box.
* ``"obc"``: S = the OBC head's "occluded" logit (``occ_logits[:, 1]``): where the model sees
  the occlusion. Meaningful for models trained with the OBC loss; for a baseline (alpha = 1)
  the head is untrained, and ``reid saliency`` marks such a model's maps so
  (:meth:`reid.saliency.mass.SaliencyResult.explains_untrained_head`).

Mechanics: a forward hook on the target layer replaces its output by a detached copy that
requires grad, and the gradient is taken with :func:`torch.autograd.grad` with respect to that
copy. So no gradient flows into the backbone below the layer, no parameter's ``.grad`` is
touched, the model's ``requires_grad`` flags do not matter, and the hook is removed on leaving
the :class:`GradCAM` context. The model must be in eval mode (BatchNorm on running statistics)
so that each image's score depends on that image only and one backward pass over the summed
scores gives every image its own gradient.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.errors import BadInputError
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, normalize_batch

#: (mean, std) per RGB channel in [0, 1] units, as a checkpoint's InferenceSpec records them.
Normalization = tuple[tuple[float, ...], tuple[float, ...]]

TARGETS: tuple[str, ...] = ("similarity", "obc")


# ----------------------------------------------------------------------------- pure pieces


def grad_cam(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM maps from a layer's activations and the score's gradient with respect to them.

    Args:
        activations: shape [N, C, h, w].
        gradients: shape [N, C, h, w], dS_n / dA_n.

    Returns:
        float32 maps, shape [N, h, w], each divided by its maximum (values in [0, 1]); a map
        with no positive cell is all zeros.
    """
    if activations.dim() != 4 or activations.shape != gradients.shape:
        raise ValueError(
            f"activations and gradients must both be [N, C, h, w], got {tuple(activations.shape)} "
            f"and {tuple(gradients.shape)}"
        )
    acts = activations.detach().float()
    weights = gradients.detach().float().mean(dim=(2, 3), keepdim=True)  # [N, C, 1, 1]
    cam = torch.relu((weights * acts).sum(dim=1))  # [N, h, w]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))


def upsample_cam(cam: Tensor | np.ndarray, size: tuple[int, int]) -> Tensor | np.ndarray:
    """Bilinear upsampling of maps to ``size`` = (H, W) (align_corners=False), clamped to [0, 1].

    Args:
        cam: shape [N, h, w] or [h, w], a tensor or a numpy array.
        size: (H, W) of the output.

    Returns:
        float32 maps of shape [N, H, W] (or [H, W]), of the input's type.
    """
    as_numpy = isinstance(cam, np.ndarray)
    t = torch.as_tensor(cam).float()
    single = t.dim() == 2
    if single:
        t = t.unsqueeze(0)
    if t.dim() != 3:
        raise ValueError(f"cam must be [N, h, w] or [h, w], got {tuple(t.shape)}")
    out = F.interpolate(t.unsqueeze(1), size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    out = out.squeeze(1).clamp_(0.0, 1.0)
    if single:
        out = out[0]
    return out.cpu().numpy() if as_numpy else out


# ------------------------------------------------------------------------------- Grad-CAM


def find_target_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The layer Grad-CAM hooks: ``name`` (dotted, e.g. "backbone.layer4") when given, else
    ``backbone.layer4`` (ResNets), else ``backbone.features`` (MobileNetV2), else ``layer4``,
    else the model's last ``nn.Conv2d``."""
    if name is not None:
        try:
            return model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"model has no layer {name!r}") from exc
    for candidate in ("backbone.layer4", "backbone.features", "layer4"):
        try:
            return model.get_submodule(candidate)
        except AttributeError:
            continue
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("model has no convolutional layer to take Grad-CAM from")
    return convs[-1]


class GradCAM:
    """Grad-CAM on one layer of a model, as a context manager that owns its hook.

    Usage::

        with GradCAM(model, find_target_layer(model)) as cam:
            maps = cam(images, lambda out: out.occ_logits[:, 1])   # [N, h, w]

    The score function maps the model's output to one score per image, shape [N].
    """

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model = model
        self.layer = layer
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._activation: Tensor | None = None
        self._calls = 0

    def __enter__(self) -> "GradCAM":
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._activation = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 4:
            raise TypeError(f"Grad-CAM layer must output a [N, C, h, w] tensor, got {type(output).__name__}")
        # A leaf that requires grad: the score's gradient is taken with respect to it, whatever
        # the parameters' requires_grad flags, and nothing flows further down the backbone.
        leaf = output.detach().requires_grad_(True)
        self._activation = leaf
        self._calls += 1
        return leaf

    def __call__(self, images: Tensor, score_fn: Callable[[Any], Tensor]) -> Tensor:
        """Maps for a batch.

        Args:
            images: model input, shape [N, 3, H_in, W_in].
            score_fn: model output -> scores, shape [N].

        Returns:
            shape [N, h, w] on the images' device, values in [0, 1] (see :func:`grad_cam`).
        """
        if self._handle is None:
            raise RuntimeError("use GradCAM as a context manager: `with GradCAM(model, layer) as cam:`")
        self._calls = 0
        with torch.enable_grad():
            output = self.model(images)
            if self._calls != 1 or self._activation is None:
                raise RuntimeError(f"the Grad-CAM layer ran {self._calls} times in one forward pass; expected once")
            activation = self._activation
            scores = score_fn(output)
            if scores.shape != (images.shape[0],):
                raise ValueError(f"score_fn must return one score per image, shape [{images.shape[0]}], got {tuple(scores.shape)}")
            (grads,) = torch.autograd.grad(scores.sum(), activation, allow_unused=True)
        if grads is None:  # the score does not depend on the layer at all
            grads = torch.zeros_like(activation)
        self._activation = None
        return grad_cam(activation, grads)


# ----------------------------------------------------------------------- maps of a model


def _to_input(images: np.ndarray, input_size: tuple[int, int], device: torch.device,
              normalization: Normalization) -> Tensor:
    """uint8 RGB [n, H, W, 3] -> normalised float [n, 3, H_in, W_in] on ``device`` (the eval path)."""
    tensors = EvalTransform(input_size)(list(images))
    return normalize_batch(torch.stack(tensors).to(device), *normalization)


def _score_fn(target: str, clean_emb: Tensor | None) -> Callable[[Any], Tensor]:
    if target == "similarity":
        assert clean_emb is not None
        return lambda out: F.cosine_similarity(out.global_feat.float(), clean_emb, dim=1)
    if target == "obc":
        return lambda out: out.occ_logits[:, 1].float()
    raise BadInputError(f"--target {target!r}: unknown; use one of {', '.join(TARGETS)}")


def model_saliency(
    model: nn.Module,
    occluded: np.ndarray,
    clean: np.ndarray,
    input_size: tuple[int, int],
    target: str = "similarity",
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    layer: nn.Module | None = None,
    normalization: Normalization = (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)),
) -> np.ndarray:
    """Grad-CAM maps of one model on occluded images, upsampled to the stored size.

    Args:
        model: an AlignedReID-like network returning ``global_feat`` and ``occ_logits``.
        occluded: uint8 RGB, shape [n, H, W, 3].
        clean: their clean originals, shape [n, H, W, 3] (used by the "similarity" target).
        input_size: (H_in, W_in) the model was trained at.
        target: "similarity" or "obc" (see the module docstring).
        layer: the hooked layer; default :func:`find_target_layer`.
        normalization: (mean, std) the model was trained with (its checkpoint records them).

    Returns:
        float32, shape [n, H, W], values in [0, 1].
    """
    if target not in TARGETS:
        raise BadInputError(f"--target {target!r}: unknown; use one of {', '.join(TARGETS)}")
    device = torch.device(device)
    layer = layer if layer is not None else find_target_layer(model)
    was_training = model.training
    model.to(device).eval()
    out_size = occluded.shape[1:3]
    maps: list[np.ndarray] = []
    try:
        for start in range(0, len(occluded), batch_size):
            occ = _to_input(occluded[start : start + batch_size], input_size, device, normalization)
            clean_emb = None
            if target == "similarity":
                with torch.no_grad():
                    clean_in = _to_input(clean[start : start + batch_size], input_size, device, normalization)
                    clean_emb = model(clean_in).global_feat.float()
            with GradCAM(model, layer) as cam:
                maps.append(upsample_cam(cam(occ, _score_fn(target, clean_emb)), out_size).cpu().numpy())
    finally:
        model.train(was_training)
    if not maps:
        return np.zeros((0, *out_size), dtype=np.float32)
    return np.concatenate(maps).astype(np.float32)
