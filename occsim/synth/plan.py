"""The plan of the synthetic set: which files exist, in which folder, with which Market-1501
names. Made in one process, from the configuration alone (:class:`occsim.synth_config.SynthConfig`).

Determinism: the plan (pids, splits, file names) comes from one generator seeded with
``[seed, S_PLAN]`` (and ``[seed, S_PLAN, pid]`` per identity); the stream tags ``S_*`` keep the
generators of the plan, the looks (:mod:`occsim.synth.looks`) and the pixels
(:mod:`occsim.synth.draw`) independent of one another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occsim.synth_config import SynthConfig


TRAIN_DIR = "bounding_box_train"
GALLERY_DIR = "bounding_box_test"
QUERY_DIR = "query"
JUNK_PID = -1
DISTRACTOR_PID = 0


# Stream tags keep the generators of different purposes independent of one another.
S_PLAN = 0
S_IDENTITY = 1
S_CAMERA = 2
S_TRACK = 3
S_IMAGE = 4
S_JUNK = 5
S_DISTRACTOR = 6


KIND_PERSON = 0
KIND_JUNK = 1
KIND_DISTRACTOR = 2


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ImageSpec:
    """One file to render: its path relative to the root and what to draw in it."""

    rel_path: str
    kind: int  # KIND_PERSON, KIND_JUNK or KIND_DISTRACTOR
    pid: int  # Market pid for persons; running index j for junk and distractors
    index: int  # image index within the identity (persons) or 0
    camera: int  # 1-based
    is_query: bool


@dataclass(frozen=True)
class Plan:
    """What :func:`make_plan` decided: the train and test pids (ascending) and every file."""

    train_pids: tuple[int, ...]
    test_pids: tuple[int, ...]
    specs: tuple[ImageSpec, ...]


def _market_name(pid: int, camera: int, seq: int, frame: int, box: int) -> str:
    pid_text = "-1" if pid == JUNK_PID else f"{pid:04d}"
    return f"{pid_text}_c{camera}s{seq}_{frame:06d}_{box:02d}.jpg"


def _identity_images(config: SynthConfig, pid: int) -> list[tuple[int, int, int, int]]:
    """Cameras and (seq, frame, box) of one identity's images, a track per camera.

    Returns a list of (camera, seq, frame, box), grouped by camera; the list index is the
    image index that seeds the image's pixels.
    """
    rng = np.random.default_rng([config.seed, S_PLAN, pid])
    n_images = max(3, int(round(config.images_per_id * rng.uniform(0.7, 1.3))))
    n_cams = int(rng.integers(2, min(config.n_cameras, n_images - 1) + 1))
    cams = np.sort(rng.choice(np.arange(1, config.n_cameras + 1), size=n_cams, replace=False))
    # Every camera gets one image, the rest fall where the person lingered (uneven weights).
    counts = np.ones(n_cams, dtype=np.int64)
    counts += rng.multinomial(n_images - n_cams, rng.dirichlet(np.full(n_cams, 1.5)))
    out: list[tuple[int, int, int, int]] = []
    for cam, count in zip(cams.tolist(), counts.tolist()):
        seq = int(rng.integers(1, 7))
        frame = int(rng.integers(0, 150_000))
        for _ in range(count):
            frame += int(rng.integers(4, 60))
            out.append((cam, seq, frame, int(rng.integers(1, 4))))
    return out


def _unique_names(rng: np.random.Generator, pid: int, count: int, n_cameras: int) -> list[tuple[str, int]]:
    """``count`` distinct Market names for one shared pid (-1 or 0), with their camera."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    while len(out) < count:
        cam = int(rng.integers(1, n_cameras + 1))
        name = _market_name(pid, cam, int(rng.integers(1, 7)), int(rng.integers(0, 200_000)),
                            int(rng.integers(1, 9)))
        if name not in seen:
            seen.add(name)
            out.append((name, cam))
    return out


def make_plan(config: SynthConfig) -> Plan:
    """Pids, splits, query choice and every file name, from ``config`` alone."""
    rng = np.random.default_rng([config.seed, S_PLAN])
    # Non-contiguous pids like Market's (a subset of 1..1501, or wider for bigger sets).
    pool = min(9999, max(1501, 2 * config.n_ids))
    pids = rng.choice(np.arange(1, pool + 1), size=config.n_ids, replace=False)
    order = rng.permutation(config.n_ids)
    n_train = (config.n_ids + 1) // 2
    train_pids = tuple(sorted(int(p) for p in pids[order[:n_train]]))
    test_pids = tuple(sorted(int(p) for p in pids[order[n_train:]]))

    specs: list[ImageSpec] = []
    for pid in train_pids:
        for k, (cam, seq, frame, box) in enumerate(_identity_images(config, pid)):
            specs.append(ImageSpec(f"{TRAIN_DIR}/{_market_name(pid, cam, seq, frame, box)}",
                                   KIND_PERSON, pid, k, cam, False))
    for pid in test_pids:
        images = _identity_images(config, pid)
        qrng = np.random.default_rng([config.seed, S_PLAN, pid, 1])
        by_cam: dict[int, list[int]] = {}
        for k, (cam, _, _, _) in enumerate(images):
            by_cam.setdefault(cam, []).append(k)
        # One query per camera that keeps a gallery image of its own: then every camera of
        # the identity stays in the gallery and each query has a match in another camera.
        queries = {int(qrng.choice(ks)) for ks in by_cam.values() if len(ks) >= 2}
        for k, (cam, seq, frame, box) in enumerate(images):
            folder = QUERY_DIR if k in queries else GALLERY_DIR
            specs.append(ImageSpec(f"{folder}/{_market_name(pid, cam, seq, frame, box)}",
                                   KIND_PERSON, pid, k, cam, k in queries))

    junk_rng = np.random.default_rng([config.seed, S_JUNK])
    for j, (name, cam) in enumerate(_unique_names(junk_rng, JUNK_PID, config.junk_count, config.n_cameras)):
        specs.append(ImageSpec(f"{GALLERY_DIR}/{name}", KIND_JUNK, j, 0, cam, False))
    dis_rng = np.random.default_rng([config.seed, S_DISTRACTOR])
    for j, (name, cam) in enumerate(_unique_names(dis_rng, DISTRACTOR_PID, config.distractor_count,
                                                   config.n_cameras)):
        specs.append(ImageSpec(f"{GALLERY_DIR}/{name}", KIND_DISTRACTOR, j, 0, cam, False))
    return Plan(train_pids, test_pids, tuple(specs))
