"""Figure 2 of the paper: per identity, the clean image, its occluded copy and each model's
Grad-CAM overlay with the occlusion box; and the contact sheet of all identities.

Images in are uint8 RGB [H, W, 3] with maps [H, W] in [0, 1]; figures out are uint8 BGR, as
cv2 writes them, upscaled ``scale`` times (the tiling helpers are :mod:`common.sheets`).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from common.sheets import draw_box, hstack_tiles, labelled, upscale, vstack_rows, write_png
from reid.saliency.mass import UNTRAINED_OBC, SaliencyResult

#: The contact sheet :func:`write_saliency_figures` writes beside the per-identity PNGs.
CONTACT_SHEET = "saliency_sheet.png"
#: Every PNG this module writes: the per-identity figures (``saliency_pid<pid>_q<row>.png``)
#: and the contact sheet. ``reid saliency`` claims these names as its outputs.
FIGURE_GLOB = "saliency_*.png"

_HEAT_WEIGHT = 0.5  # share of the jet colour in the overlay; the rest is the image


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
    each model's saliency on the occluded copy with the box (its label says when the map
    explains an untrained OBC head). uint8 BGR."""
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
        name = f"{m.name} ({UNTRAINED_OBC})" if result.explains_untrained_head(m) else m.name
        tiles.append(labelled(draw_box(overlay_cam(result.occluded_images[i], m.cams[i], scale), box, scale),
                              [name, "in box: n/a" if not math.isfinite(share) else f"in box: {share:.1%}"]))
    return hstack_tiles(tiles)


def write_saliency_figures(result: SaliencyResult, out_dir: str | Path, scale: int = 3,
                           overwrite: bool = True, limit: int | None = None) -> list[Path]:
    """One PNG per identity (``saliency_pid<pid>_q<row>.png``) and the contact sheet
    (:data:`CONTACT_SHEET`, rows = identities), for the first ``limit`` identities (None = all;
    the box-mass share is measured on all of them either way); without ``overwrite`` none over
    an existing file. With ``overwrite``, an earlier run's figures in ``out_dir`` that this run
    did not draw again (other identities, or a sheet when ``limit`` is 0) are removed once the
    new ones are written, so the folder shows one run. Returns the paths, contact sheet last."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    figures: list[np.ndarray] = []
    drawn = len(result.rows) if limit is None else min(int(limit), len(result.rows))
    for i in range(drawn):
        figure = identity_figure(result, i, scale)
        figures.append(figure)
        name = f"saliency_pid{int(result.pids[i]):04d}_q{int(result.rows[i])}.png"
        paths.append(write_png(out_dir / name, figure, overwrite=overwrite))
    if figures:
        title = labelled(np.zeros((0, max(f.shape[1] for f in figures), 3), dtype=np.uint8),
                         [f"Grad-CAM, target: {result.target}; box = occluder"], line_height=22)
        paths.append(write_png(out_dir / CONTACT_SHEET, vstack_rows([title, *figures]), overwrite=overwrite))
    if overwrite:
        written = {path.name for path in paths}
        for stale in out_dir.glob(FIGURE_GLOB):
            if stale.is_file() and stale.name not in written:
                stale.unlink()
    return paths
