"""Writing the synthetic set: render the planned images in worker processes, encode them as
JPEG and put them in place atomically (:func:`synthesize_market`).

The files are written into a hidden temporary sibling folder that is renamed to the output
only when complete; the bytes written do not depend on how the images are split between
worker processes.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from common.atomic import default_mode
from common.errors import BadInputError
from common.workers import resolve_workers
from occsim.synth.draw import render_image
from occsim.synth.plan import GALLERY_DIR, QUERY_DIR, TRAIN_DIR, ImageSpec, make_plan
from occsim.synth_config import SynthConfig

logger = logging.getLogger(__name__)


JPEG_QUALITY = 95

# The "Thumbs.db" Windows leaves in the real download is an OLE2 compound file; its magic
# number is enough for a reader to have to skip it.
_THUMBS_DB = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize_market` wrote. Gallery counts include junk and distractors."""

    root: Path
    n_train_ids: int
    n_test_ids: int
    n_train_images: int
    n_query_images: int
    n_gallery_images: int
    n_junk: int
    n_distractors: int
    n_cameras: int


def _render_chunk(config: SynthConfig, specs: list[ImageSpec], root: str) -> int:
    """Render and write ``specs`` under ``root``; returns the number of files written."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for spec in specs:
        rgb = render_image(config, spec)
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
        if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
            raise RuntimeError(f"cv2 could not encode {spec.rel_path}")
        with open(os.path.join(root, spec.rel_path), "wb") as fh:
            fh.write(data.tobytes())
    return len(specs)


def _chunks(specs: tuple[ImageSpec, ...], workers: int) -> list[list[ImageSpec]]:
    """Consecutive runs of specs (an identity's images stay together where the size allows)."""
    size = max(16, min(256, math.ceil(len(specs) / max(1, workers * 8))))
    return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


def _check_out_dir(out_dir: Path, force: bool) -> None:
    real = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents or real == Path.home().resolve():
        # --force deletes the folder: never the working directory, an ancestor or home.
        raise BadInputError(f"{out_dir}: is the current folder, one above it or the home folder; "
                            f"pick a dedicated --out such as data/synthetic-market")
    if out_dir.exists() and not force:
        if not out_dir.is_dir():
            raise BadInputError(f"{out_dir}: exists and is not a folder; remove it, pick another --out or pass --force")
        if any(out_dir.iterdir()):
            raise BadInputError(f"{out_dir}: exists and is not empty; pass --force to replace it or pick another --out")


def synthesize_market(out_dir: Path, config: SynthConfig, workers: int = 1, force: bool = False) -> SynthSummary:
    """Write the synthetic set to ``out_dir`` in the Market-1501 layout and return its counts.

    The files are written into a hidden temporary sibling folder that is renamed to
    ``out_dir`` only when complete, so an interrupted run leaves nothing that looks valid.
    An existing non-empty ``out_dir`` is an error unless ``force``, which replaces it (only
    after the new set is complete). ``workers``: processes drawing the images, as
    ``--workers`` says (:data:`common.workers.PROCESS_WORKERS`: 0 = all cores; here the
    default is 1, drawing in this process). The bytes written do not depend on it.
    """
    out_dir = Path(out_dir)
    workers = resolve_workers(workers)  # more processes than usable CPUs only contend
    _check_out_dir(out_dir, force)
    plan = make_plan(config)
    target = out_dir.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        tmp.chmod(default_mode(directory=True))  # mkdtemp's 0700 would stay on the renamed output
    except OSError as exc:
        raise BadInputError(f"{out_dir}: cannot create the output folder ({exc.strerror}); "
                            f"pick a writable --out") from exc
    try:
        for folder in (TRAIN_DIR, GALLERY_DIR, QUERY_DIR):
            (tmp / folder).mkdir()
        chunks = _chunks(plan.specs, workers)
        with tqdm(total=len(plan.specs), unit="img", desc="synth", disable=None) as bar:
            if workers == 1:
                for chunk in chunks:
                    bar.update(_render_chunk(config, chunk, str(tmp)))
            else:
                jobs = (delayed(_render_chunk)(config, chunk, str(tmp)) for chunk in chunks)
                for done in Parallel(n_jobs=workers, backend="loky", return_as="generator_unordered")(jobs):
                    bar.update(done)
        (tmp / GALLERY_DIR / "Thumbs.db").write_bytes(_THUMBS_DB)
        if out_dir.is_symlink() or out_dir.is_file():
            out_dir.unlink()
        elif out_dir.exists():
            shutil.rmtree(out_dir)  # empty, or replaced under force
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    counts = {TRAIN_DIR: 0, QUERY_DIR: 0, GALLERY_DIR: 0}
    for spec in plan.specs:
        counts[spec.rel_path.split("/", 1)[0]] += 1
    summary = SynthSummary(
        root=out_dir, n_train_ids=len(plan.train_pids), n_test_ids=len(plan.test_pids),
        n_train_images=counts[TRAIN_DIR], n_query_images=counts[QUERY_DIR],
        n_gallery_images=counts[GALLERY_DIR], n_junk=config.junk_count,
        n_distractors=config.distractor_count, n_cameras=config.n_cameras,
    )
    logger.info(
        "synthetic Market-1501 at %s: train %d ids / %d images, test %d ids, query %d images, "
        "gallery %d images (incl. %d junk, %d distractors), %d cameras, seed %d",
        out_dir, summary.n_train_ids, summary.n_train_images, summary.n_test_ids, summary.n_query_images,
        summary.n_gallery_images, summary.n_junk, summary.n_distractors, summary.n_cameras, config.seed,
    )
    return summary
