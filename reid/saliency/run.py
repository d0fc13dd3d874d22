"""``reid saliency`` end to end: pick occluded queries, load checkpoints, compute the maps
(:mod:`reid.saliency.gradcam`), their box mass (:mod:`reid.saliency.mass`) and write the
figures (:mod:`reid.saliency.figures`) and the JSON summary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from common.errors import BadInputError
from occsim.schema import OCC_TYPE_NAMES, OCCLUDER_NAMES
from occsim.store import SplitManifest, open_h5, read_images, read_store
from reid.saliency.figures import FIGURE_GLOB, write_saliency_figures
from reid.saliency.gradcam import TARGETS, Normalization, model_saliency
from reid.saliency.mass import (
    BOX_MASS_JSON,
    ModelSaliency,
    SaliencyResult,
    box_mass,
    box_mass_summary,
    write_box_mass_json,
)

logger = logging.getLogger(__name__)

#: What a run writes into its folder (glob patterns): per-identity PNGs, the contact sheet, the JSON.
SALIENCY_OUTPUTS: tuple[str, ...] = (FIGURE_GLOB, BOX_MASS_JSON)


# ------------------------------------------------------------------- queries -> saliency


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


def saliency_for_queries(
    models: Sequence[tuple[str, nn.Module, tuple[int, int], Normalization]],
    h5_path: str | Path,
    rows: Sequence[int] | np.ndarray,
    target: str = "similarity",
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> SaliencyResult:
    """Grad-CAM of each model on occluded query images, and the share of mass in each box.

    Args:
        models: (name, model, input_size, (mean, std)) quadruples: input_size = (H, W) the
            model expects, (mean, std) the normalisation it was trained with.
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
    for name, model, input_size, normalization in tqdm(models, desc="saliency", unit="model", disable=None,
                                                        leave=False):
        cams = model_saliency(model, occluded, clean, input_size, target, device, batch_size,
                              normalization=normalization)
        masses = np.array([box_mass(c, b) for c, b in zip(cams, result.boxes)], dtype=np.float64)
        result.models.append(ModelSaliency(name=name, cams=cams, box_mass=masses))
        logger.info("%s: mean saliency share inside the box %.3f", name, result.models[-1].mean_box_mass)
    return result


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
    overwrite: bool = True,
    max_figures: int | None = None,
) -> SaliencyReport:
    """``reid saliency``: load each checkpoint, compute Grad-CAM on the chosen occluded queries,
    write the Figure-2 PNGs, the contact sheet and :data:`BOX_MASS_JSON` into ``out_dir``.

    Each model runs at the input size and with the mean/std its checkpoint records
    (:func:`reid.models.inference.load_inference_model`). With the "obc" target, a model whose
    OBC head was not trained (alpha = 1) is marked so in its figures, the JSON and the table.
    Without ``overwrite`` no file of an earlier run (:data:`SALIENCY_OUTPUTS`) is replaced.
    ``max_figures`` caps the identities drawn (None = all); the share inside the box is averaged
    over every chosen query, drawn or not.

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
    models: list[tuple[str, nn.Module, tuple[int, int], Normalization]] = []
    heads: list[bool | None] = []
    for label, path in zip(labels, paths):
        model, spec = load_inference_model(path, device=dev)
        if spec.dataset_fingerprint != store.fingerprint:
            logger.warning("%s was trained on data with another fingerprint than %s: the splits may differ", path, data)
        models.append((label, model, spec.input_size, (spec.mean, spec.std)))
        heads.append(spec.obc_head_trained)
    result = saliency_for_queries(models, data, rows, target=target, device=dev, batch_size=batch_size)
    for entry, trained in zip(result.models, heads):
        entry.obc_head_trained = trained
    drawn = write_saliency_figures(result, out_dir, scale=scale, overwrite=overwrite, limit=max_figures)
    summary = box_mass_summary(
        result,
        extra={
            "data": str(data),
            "data_fingerprint": store.fingerprint,
            "checkpoints": {label: str(path) for label, path in zip(labels, paths)},
            "input_size": {label: list(size) for label, _, size, _ in models},
        },
    )
    json_path = write_box_mass_json(summary, out_dir / BOX_MASS_JSON, overwrite=overwrite)
    return SaliencyReport(summary=summary, figures=drawn, json_path=json_path, result=result)
