"""Box mass: how much of a Grad-CAM map falls inside the occlusion box, and its summary.

``box_mass(cam, box)`` = (saliency inside the box) / (total saliency) of a map upsampled to
the stored image size; an all-zero map gives NaN (it carries no evidence either way) and
means are taken over the finite values, with their count reported. The chance level is the
box's share of the image area: what a uniform map would give.

Also the result types every part of ``reid saliency`` passes around (:class:`ModelSaliency`,
:class:`SaliencyResult`: maps [n, H, W], masses [n], boxes [n, 4]) and the JSON / table
summary (:func:`box_mass_summary`, :data:`BOX_MASS_JSON`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from common.atomic import atomic_write_json

#: File written by :func:`write_box_mass_json` in ``reid saliency``'s output folder.
BOX_MASS_JSON = "box_mass.json"
#: Said of a model whose "obc"-target map explains an OBC head that was never trained (alpha = 1).
UNTRAINED_OBC = "OBC head untrained"


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


# ------------------------------------------------------------------------------- results


@dataclass
class ModelSaliency:
    """One model's maps over the evaluated queries.

    Attributes:
        name: label of the model (e.g. "baseline", "obc").
        cams: float32 maps at the stored image size, shape [n, H, W], values in [0, 1].
        box_mass: share of each map's mass inside its occlusion box, shape [n] (NaN: empty map).
        obc_head_trained: its checkpoint's OBC head was trained (None: unknown; see
            :func:`reid.models.checkpoint.obc_head_trained`).
    """

    name: str
    cams: np.ndarray
    box_mass: np.ndarray
    obc_head_trained: bool | None = None

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

    def explains_untrained_head(self, model: ModelSaliency) -> bool:
        """``model``'s maps take the logit of an OBC head that was not trained (target "obc")."""
        return self.target == "obc" and model.obc_head_trained is False

    @property
    def area_share(self) -> np.ndarray:
        """Each box's share of the image area (the chance level), shape [n]."""
        size = self.occluded_images.shape[1:3]
        return np.array([box_area_share(b, size) for b in self.boxes], dtype=np.float64)


# -------------------------------------------------------------------------------- summary


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def box_mass_summary(result: SaliencyResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-ready summary: per model the mean/std of the in-box share, the chance level, per image.

    ``lift`` = mean in-box share / mean box area share: 1 is what a uniform map gives, above 1
    the model looks at the occluder more than at an average region. NaNs are written as null.
    With the "obc" target each model also says ``obc_head_trained`` (False: its maps explain an
    untrained head).
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
                **({"obc_head_trained": m.obc_head_trained} if result.target == "obc" else {}),
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
    """Plain-text table: model, mean in-box share, std, lift over chance, valid maps; then one
    line naming the models whose "obc"-target maps explain an untrained OBC head, if any."""
    header = ("model", "in-box share", "std", "lift", "maps")
    lines_: list[tuple[str, ...]] = []
    for m in summary["models"]:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines_.append((m["name"], fmt(m["mean_box_mass"]), fmt(m["std_box_mass"]), fmt(m["lift"]), str(m["n_valid"])))
    chance = summary["chance_box_area_share"]
    lines_.append(("(chance: box area)", "n/a" if chance is None else f"{chance:.3f}", "", "1.000", str(summary["num_queries"])))
    widths = [max(len(header[i]), *(len(r[i]) for r in lines_)) for i in range(len(header))]
    fmt_row = lambda r: "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip()  # noqa: E731
    untrained = [m["name"] for m in summary["models"] if m.get("obc_head_trained") is False]
    note = [f"{', '.join(untrained)}: {UNTRAINED_OBC} (alpha = 1), the map explains no trained decision"] if untrained else []
    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in lines_] + note)


def write_box_mass_json(summary: dict[str, Any], path: str | Path, overwrite: bool = True) -> Path:
    """Write the summary atomically (temporary file, rename; without ``overwrite`` not over an
    existing file)."""
    path = Path(path)
    atomic_write_json(path, summary, "box-mass summary", overwrite=overwrite, allow_nan=False)
    return path
