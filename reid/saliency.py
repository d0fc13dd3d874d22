"""Grad-CAM saliency (Selvaraju et al. 2017) on the last convolutional block, and Figure 2.

Grad-CAM, for activations A [N, C, h, w] of the target layer and the gradient G = dS/dA of a
scalar score S per image::

    weights[n, c] = mean over (y, x) of G[n, c, y, x]          (global-average-pooled gradient)
    cam[n]        = ReLU(sum_c weights[n, c] * A[n, c])          shape [h, w]
    cam[n]       /= max(cam[n])                                   in [0, 1]; an all-zero map stays 0

The map is divided by its maximum, not min-max stretched: a cell with no positive evidence stays
exactly 0, so the share of saliency *mass* inside a box (:func:`box_mass`) means what it says.

Target layer: ``model.backbone.layer4`` (AlignedReID's last residual block, whose output is the
feature map both the global and the local branch pool), else ``model.layer4``, else the last
``nn.Conv2d`` of the model (:func:`find_target_layer`).

Targets (the score S whose gradient is taken). A re-ID embedding model has no class score for
the query's identity, so:

* ``"similarity"`` (default): S = cosine(global_feat(occluded image), global_feat(clean image)),
  the clean embedding computed without gradient from the clean original of the same query
  (the ``clean_index`` row). The map shows which regions of the occluded image make the model
  recognise *this* person; a model that relies on the occluder puts mass on the box.
* ``"obc"``: S = the OBC head's "occluded" logit (``occ_logits[:, 1]``): where the model sees
  the occlusion. Meaningful for models trained with the OBC loss; for a baseline (alpha = 1)
  the head is untrained.

Mechanics: a forward hook on the target layer replaces its output by a detached copy that
requires grad, and the gradient is taken with :func:`torch.autograd.grad` with respect to that
copy. So no gradient flows into the backbone below the layer, no parameter's ``.grad`` is
touched, the model's ``requires_grad`` flags do not matter, and the hook is removed on leaving
the :class:`GradCAM` context. The model must be in eval mode (BatchNorm on running statistics)
so that each image's score depends on that image only and one backward pass over the summed
scores gives every image its own gradient.

Box mass: ``box_mass(cam, box)`` = (saliency inside the box) / (total saliency) of a map
upsampled to the stored image size; an all-zero map gives NaN (it carries no evidence either
way) and means are taken over the finite values, with their count reported. The chance level
is the box's share of the image area: what a uniform map would give.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from common.atomic import atomic_write_json
from common.errors import BadInputError
from common.sheets import draw_box, hstack_tiles, labelled, upscale, vstack_rows, write_png
from occsim.schema import OCC_TYPE_NAMES, OCCLUDER_NAMES
from occsim.store import SplitManifest, open_h5, read_images, read_store
from reid.data.transforms import EvalTransform, normalize_batch

logger = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("similarity", "obc")

#: Files written by :func:`write_saliency_figures` / :func:`write_box_mass_json`.
CONTACT_SHEET = "saliency_sheet.png"
BOX_MASS_JSON = "box_mass.json"

_HEAT_WEIGHT = 0.5  # share of the jet colour in the overlay; the rest is the image


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


def _clip_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a stored box (x, y, w, h), clipped to the image; ValueError if empty."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"box {tuple(box)} is not an occlusion box (x, y >= 0 and w, h > 0 expected)")
    x0, y0 = min(x, width), min(y, height)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {tuple(box)} lies outside the {height}x{width} image")
    return x0, y0, x1, y1


def box_mass(cam: np.ndarray | Tensor, box: Sequence[int]) -> float:
    """Share of the saliency mass inside an occlusion box.

    Args:
        cam: one map, shape [H, W], non-negative, in the pixel frame of the box.
        box: (x, y, w, h) in the map's pixels (the HDF5 ``box`` column); clipped to the map.

    Returns:
        sum(cam inside the box) / sum(cam), in [0, 1]; NaN when the map is all zeros.

    Raises:
        ValueError: not a box (a ``-1`` row of a clean image, zero size, or outside the map).
    """
    arr = torch.as_tensor(cam).double().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"cam must be [H, W], got shape {arr.shape}")
    x0, y0, x1, y1 = _clip_box(box, *arr.shape)
    total = float(arr.sum())
    if total <= 0.0:
        return math.nan
    return float(arr[y0:y1, x0:x1].sum()) / total


def box_area_share(box: Sequence[int], size: tuple[int, int]) -> float:
    """The box's share of the image area (after clipping): the chance level of :func:`box_mass`."""
    height, width = int(size[0]), int(size[1])
    x0, y0, x1, y1 = _clip_box(box, height, width)
    return (x1 - x0) * (y1 - y0) / float(height * width)


# ------------------------------------------------------------------------------- Grad-CAM


def find_target_layer(model: nn.Module, name: str | None = None) -> nn.Module:
    """The layer Grad-CAM hooks: ``name`` (dotted, e.g. "backbone.layer4") when given, else
    ``backbone.layer4``, else ``layer4``, else the model's last ``nn.Conv2d``."""
    if name is not None:
        try:
            return model.get_submodule(name)
        except AttributeError as exc:
            raise ValueError(f"model has no layer {name!r}") from exc
    for candidate in ("backbone.layer4", "layer4"):
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


# ------------------------------------------------------------------- queries -> saliency


@dataclass
class ModelSaliency:
    """One model's maps over the evaluated queries.

    Attributes:
        name: label of the model (e.g. "baseline", "obc").
        cams: float32 maps at the stored image size, shape [n, H, W], values in [0, 1].
        box_mass: share of each map's mass inside its occlusion box, shape [n] (NaN: empty map).
    """

    name: str
    cams: np.ndarray
    box_mass: np.ndarray

    @property
    def mean_box_mass(self) -> float:
        """Mean over the finite values (NaN when there are none)."""
        finite = self.box_mass[np.isfinite(self.box_mass)]
        return float(finite.mean()) if finite.size else math.nan


@dataclass
class SaliencyResult:
    """Saliency of several models on the same occluded queries (one per identity).

    Attributes:
        rows: query-split rows of the occluded images, shape [n].
        clean_rows: rows of their clean originals, shape [n].
        pids, camids: shape [n].
        boxes: occlusion boxes (x, y, w, h) in stored pixels, shape [n, 4].
        occluded_images, clean_images: uint8 RGB, shape [n, H, W, 3].
        target: "similarity" or "obc".
        models: one :class:`ModelSaliency` per model, in the order given.
        occ_type: occluder name of the queries ("mean", ...), for labels.
    """

    rows: np.ndarray
    clean_rows: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    boxes: np.ndarray
    occluded_images: np.ndarray
    clean_images: np.ndarray
    target: str
    models: list[ModelSaliency] = field(default_factory=list)
    occ_type: str = ""

    @property
    def area_share(self) -> np.ndarray:
        """Each box's share of the image area (the chance level), shape [n]."""
        size = self.occluded_images.shape[1:3]
        return np.array([box_area_share(b, size) for b in self.boxes], dtype=np.float64)


def select_occluded_queries(
    manifest: SplitManifest,
    h5_path: str | Path,
    occ_type: str = "mean",
    ids: Sequence[int] | None = None,
    n: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Occluded query rows, one per identity: the identities ``ids``, or ``n`` drawn at random.

    For each chosen identity the first query row occluded with ``occ_type`` is taken. The
    random draw (``numpy.random.default_rng(seed)``, without replacement, among the identities
    that have such a row) is reproducible. Rows are returned in the order of ``ids``, or by
    pid for a random draw.

    Raises:
        BadInputError: unknown ``occ_type``, no occluded row of that type, or an id without one.
    """
    if occ_type not in OCCLUDER_NAMES:
        raise BadInputError(f"--type {occ_type!r}: unknown occluder; use one of {', '.join(OCCLUDER_NAMES)}")
    candidates = manifest.rows(f"occluded:{occ_type}")
    if candidates.size == 0:
        raise BadInputError(
            f"{h5_path}: the query split has no images occluded with {occ_type!r}; "
            f"generate them with `occsim generate` or pick another --type"
        )
    first: dict[int, int] = {}
    for row in candidates.tolist():  # ascending rows, so setdefault keeps the first one
        first.setdefault(int(manifest.pid[row]), row)
    if ids is not None:
        missing = [pid for pid in ids if int(pid) not in first]
        if missing:
            known = sorted(first)
            raise BadInputError(
                f"{h5_path}: --ids {','.join(map(str, missing))} not among the query identities with an "
                f"occluded:{occ_type} image; pick from {known[:10]}{' ...' if len(known) > 10 else ''}"
            )
        return np.array([first[int(pid)] for pid in ids], dtype=np.int64)
    if n < 1:
        raise BadInputError(f"--n {n}: must be at least 1")
    pids = np.array(sorted(first), dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(pids, size=min(n, pids.size), replace=False)
    return np.array([first[int(pid)] for pid in sorted(chosen.tolist())], dtype=np.int64)


def _to_input(images: np.ndarray, input_size: tuple[int, int], device: torch.device) -> Tensor:
    """uint8 RGB [n, H, W, 3] -> normalised float [n, 3, H_in, W_in] on ``device`` (the eval path)."""
    tensors = EvalTransform(input_size)(list(images))
    return normalize_batch(torch.stack(tensors).to(device))


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
) -> np.ndarray:
    """Grad-CAM maps of one model on occluded images, upsampled to the stored size.

    Args:
        model: an AlignedReID-like network returning ``global_feat`` and ``occ_logits``.
        occluded: uint8 RGB, shape [n, H, W, 3].
        clean: their clean originals, shape [n, H, W, 3] (used by the "similarity" target).
        input_size: (H_in, W_in) the model was trained at.
        target: "similarity" or "obc" (see the module docstring).
        layer: the hooked layer; default :func:`find_target_layer`.

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
            occ = _to_input(occluded[start : start + batch_size], input_size, device)
            clean_emb = None
            if target == "similarity":
                with torch.no_grad():
                    clean_emb = model(_to_input(clean[start : start + batch_size], input_size, device)).global_feat.float()
            with GradCAM(model, layer) as cam:
                maps.append(upsample_cam(cam(occ, _score_fn(target, clean_emb)), out_size).cpu().numpy())
    finally:
        model.train(was_training)
    if not maps:
        return np.zeros((0, *out_size), dtype=np.float32)
    return np.concatenate(maps).astype(np.float32)


def saliency_for_queries(
    models: Sequence[tuple[str, nn.Module, tuple[int, int]]],
    h5_path: str | Path,
    rows: Sequence[int] | np.ndarray,
    target: str = "similarity",
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> SaliencyResult:
    """Grad-CAM of each model on occluded query images, and the share of mass in each box.

    Args:
        models: (name, model, input_size) triples; input_size = (H, W) the model expects.
        h5_path: the occluded-reid HDF5 file.
        rows: rows of the ``query`` split holding occluded images, shape [n].
        target: "similarity" or "obc".
        device: where the models run.

    Returns:
        :class:`SaliencyResult` with one :class:`ModelSaliency` per model.

    Raises:
        BadInputError: a row that is out of range or not an occluded image.
    """
    info = read_store(h5_path)
    manifest = info.splits["query"]
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    bad = [int(r) for r in rows if r < 0 or r >= len(manifest) or not manifest.occluded[r]]
    if bad:
        raise BadInputError(f"{h5_path}: query rows {bad[:5]} are not occluded images; pick occluded query rows")
    clean_rows = manifest.clean_index[rows].astype(np.int64)
    with open_h5(h5_path) as h5:
        occluded = read_images(h5, "query", rows)
        clean = read_images(h5, "query", clean_rows)
    codes = sorted(set(manifest.occ_type[rows].tolist()))
    result = SaliencyResult(
        rows=rows,
        clean_rows=clean_rows,
        pids=manifest.pid[rows].copy(),
        camids=manifest.camid[rows].copy(),
        boxes=manifest.box[rows].astype(np.int64),
        occluded_images=occluded,
        clean_images=clean,
        target=target,
        occ_type=",".join(OCC_TYPE_NAMES[c] for c in codes if c > 0),
    )
    for name, model, input_size in tqdm(models, desc="saliency", unit="model", disable=None, leave=False):
        cams = model_saliency(model, occluded, clean, input_size, target, device, batch_size)
        masses = np.array([box_mass(c, b) for c, b in zip(cams, result.boxes)], dtype=np.float64)
        result.models.append(ModelSaliency(name=name, cams=cams, box_mass=masses))
        logger.info("%s: mean saliency share inside the box %.3f", name, result.models[-1].mean_box_mass)
    return result


# -------------------------------------------------------------------------------- summary


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def box_mass_summary(result: SaliencyResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready summary: per model the mean/std of the in-box share, the chance level, per image.

    ``lift`` = mean in-box share / mean box area share: 1 is what a uniform map gives, above 1
    the model looks at the occluder more than at an average region. NaNs are written as null.
    """
    chance = result.area_share
    chance_mean = float(chance.mean()) if chance.size else math.nan
    models = []
    for m in result.models:
        finite = m.box_mass[np.isfinite(m.box_mass)]
        mean = float(finite.mean()) if finite.size else math.nan
        models.append(
            {
                "name": m.name,
                "mean_box_mass": _finite_or_none(mean),
                "std_box_mass": _finite_or_none(float(finite.std()) if finite.size else math.nan),
                "lift": _finite_or_none(mean / chance_mean if chance_mean > 0 else math.nan),
                "n_valid": int(finite.size),
            }
        )
    per_image = [
        {
            "row": int(result.rows[i]),
            "clean_row": int(result.clean_rows[i]),
            "pid": int(result.pids[i]),
            "camid": int(result.camids[i]),
            "box": [int(v) for v in result.boxes[i]],
            "area_share": float(chance[i]),
            "box_mass": {m.name: _finite_or_none(float(m.box_mass[i])) for m in result.models},
        }
        for i in range(len(result.rows))
    ]
    summary: dict[str, Any] = {
        "target": result.target,
        "occ_type": result.occ_type,
        "num_queries": int(len(result.rows)),
        "chance_box_area_share": _finite_or_none(chance_mean),
        "models": models,
        "per_image": per_image,
    }
    if extra:
        summary.update(extra)
    return summary


def format_box_mass_table(summary: dict[str, Any]) -> str:
    """Plain-text table: model, mean in-box share, std, lift over chance, valid maps."""
    header = ("model", "in-box share", "std", "lift", "maps")
    lines_: list[tuple[str, ...]] = []
    for m in summary["models"]:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines_.append((m["name"], fmt(m["mean_box_mass"]), fmt(m["std_box_mass"]), fmt(m["lift"]), str(m["n_valid"])))
    chance = summary["chance_box_area_share"]
    lines_.append(("(chance: box area)", "n/a" if chance is None else f"{chance:.3f}", "", "1.000", str(summary["num_queries"])))
    widths = [max(len(header[i]), *(len(r[i]) for r in lines_)) for i in range(len(header))]
    fmt_row = lambda r: "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()  # noqa: E731
    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in lines_])


def write_box_mass_json(summary: dict[str, Any], path: str | Path) -> Path:
    """Write the summary atomically (temporary file, rename)."""
    path = Path(path)
    atomic_write_json(path, summary, "box-mass summary", allow_nan=False)
    return path


# -------------------------------------------------------------------------------- figures


def overlay_cam(image_rgb: np.ndarray, cam: np.ndarray, scale: int = 3) -> np.ndarray:
    """Jet-coloured map blended with the image, upscaled: uint8 BGR [H*scale, W*scale, 3].

    Args:
        image_rgb: uint8 RGB, shape [H, W, 3].
        cam: map in [0, 1], shape [H, W] (same frame as the image).
    """
    image = upscale(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), scale)
    big = cv2.resize(cam.astype(np.float32), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(big * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(heat, _HEAT_WEIGHT, image, 1.0 - _HEAT_WEIGHT, 0.0)


def identity_figure(result: SaliencyResult, index: int, scale: int = 3) -> np.ndarray:
    """Figure 2 for one identity, left to right: clean image, occluded copy with its box, then
    each model's saliency on the occluded copy with the box. uint8 BGR."""
    i = index
    box = result.boxes[i]
    occ_name = result.occ_type or "occluded"
    tiles = [
        labelled(upscale(cv2.cvtColor(result.clean_images[i], cv2.COLOR_RGB2BGR), scale),
                 ["clean", f"pid {int(result.pids[i])} cam {int(result.camids[i])}"]),
        labelled(draw_box(upscale(cv2.cvtColor(result.occluded_images[i], cv2.COLOR_RGB2BGR), scale), box, scale),
                 [f"occluded ({occ_name})", f"box = {result.area_share[i]:.1%} of image"]),
    ]
    for m in result.models:
        share = m.box_mass[i]
        tiles.append(labelled(draw_box(overlay_cam(result.occluded_images[i], m.cams[i], scale), box, scale),
                              [m.name, "in box: n/a" if not math.isfinite(share) else f"in box: {share:.1%}"]))
    return hstack_tiles(tiles)


def write_saliency_figures(result: SaliencyResult, out_dir: str | Path, scale: int = 3) -> list[Path]:
    """One PNG per identity (``saliency_pid<pid>_q<row>.png``) and the contact sheet
    (:data:`CONTACT_SHEET`, rows = identities). Returns the paths, contact sheet last."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    figures: list[np.ndarray] = []
    for i in range(len(result.rows)):
        figure = identity_figure(result, i, scale)
        figures.append(figure)
        paths.append(write_png(out_dir / f"saliency_pid{int(result.pids[i]):04d}_q{int(result.rows[i])}.png", figure))
    if figures:
        title = labelled(np.zeros((0, max(f.shape[1] for f in figures), 3), dtype=np.uint8),
                         [f"Grad-CAM, target: {result.target}; box = occluder"], line_height=22)
        paths.append(write_png(out_dir / CONTACT_SHEET, vstack_rows([title, *figures])))
    return paths


# ---------------------------------------------------------------------------- end to end


def default_model_names(checkpoints: Sequence[Path], names: Sequence[str] | None = None) -> list[str]:
    """``names`` when given (one per checkpoint), else each checkpoint's run folder name, made
    unique with a "-2", "-3" ... suffix.

    Raises:
        BadInputError: a number of names that differs from the number of checkpoints.
    """
    if names:
        if len(names) != len(checkpoints):
            raise BadInputError(
                f"--name given {len(names)} times for {len(checkpoints)} --checkpoint; give one name per checkpoint or none"
            )
        return list(names)
    out: list[str] = []
    for path in checkpoints:
        base = Path(path).parent.name or Path(path).stem
        name, suffix = base, 2
        while name in out:
            name, suffix = f"{base}-{suffix}", suffix + 1
        out.append(name)
    return out


@dataclass
class SaliencyReport:
    """What :func:`run_saliency` produced.

    Attributes:
        summary: the box-mass summary (also written as JSON), see :func:`box_mass_summary`.
        figures: per-identity PNGs, then the contact sheet.
        json_path: the box-mass JSON.
        result: the maps themselves.
    """

    summary: dict[str, Any]
    figures: list[Path]
    json_path: Path
    result: SaliencyResult


def run_saliency(
    data: str | Path,
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    n: int = 8,
    seed: int = 0,
    occ_type: str = "mean",
    target: str = "similarity",
    device: str | torch.device | None = "auto",
    batch_size: int = 16,
    scale: int = 3,
) -> SaliencyReport:
    """``reid saliency``: load each checkpoint, compute Grad-CAM on the chosen occluded queries,
    write the Figure-2 PNGs, the contact sheet and :data:`BOX_MASS_JSON` into ``out_dir``.

    Each model runs at the input size its checkpoint records
    (:func:`reid.models.inference.load_inference_model`).

    Raises:
        BadInputError: a missing or foreign file, unknown --type / --target, ids without an
            occluded query image of that type, or a --name count that does not match.
    """
    # Imported here: the checkpoint and feature modules are only needed end to end.
    from common.device import resolve_device
    from reid.models.inference import load_inference_model

    data = Path(data)
    out_dir = Path(out_dir)
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise BadInputError("--checkpoint: give at least one checkpoint")
    if target not in TARGETS:
        raise BadInputError(f"--target {target!r}: unknown; use one of {', '.join(TARGETS)}")
    labels = default_model_names(paths, names)
    store = read_store(data)
    # Select before loading the models, so that a wrong --ids fails fast.
    rows = select_occluded_queries(store.splits["query"], data, occ_type, ids=ids, n=n, seed=seed)
    dev = resolve_device(device)
    models: list[tuple[str, nn.Module, tuple[int, int]]] = []
    for label, path in zip(labels, paths):
        model, spec = load_inference_model(path, device=dev)
        if spec.dataset_fingerprint != store.fingerprint:
            logger.warning("%s was trained on data with another fingerprint than %s: the splits may differ", path, data)
        models.append((label, model, spec.input_size))
    result = saliency_for_queries(models, data, rows, target=target, device=dev, batch_size=batch_size)
    figures = write_saliency_figures(result, out_dir, scale=scale)
    summary = box_mass_summary(
        result,
        extra={
            "data": str(data),
            "data_fingerprint": store.fingerprint,
            "checkpoints": {label: str(path) for label, path in zip(labels, paths)},
            "input_size": {label: list(size) for label, _, size in models},
        },
    )
    json_path = write_box_mass_json(summary, out_dir / BOX_MASS_JSON)
    return SaliencyReport(summary=summary, figures=figures, json_path=json_path, result=result)
